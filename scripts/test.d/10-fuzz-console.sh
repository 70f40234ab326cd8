#!/usr/bin/env bash
# The console parser's fuzz target, for a bounded time (FUZZ_SECONDS, default 60). A crash makes
# libFuzzer exit non-zero and this step fail, with the crashing input under crates/console/fuzz/artifacts.
set -euo pipefail
cd "$(dirname "$0")/../.."
log=$(mktemp)
if ! crates/console/fuzz/run.sh "${FUZZ_SECONDS:-60}" >"$log" 2>&1; then
  tail -n 60 "$log"
  echo "fuzzing the console parser found a failure" >&2
  exit 1
fi
grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || tail -n 5 "$log"
