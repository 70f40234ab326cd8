#!/usr/bin/env bash
# Fuzz the console parser for a bounded time: crates/console/fuzz/run.sh [SECONDS]
# Needs cargo-fuzz (installed here if missing). The toolchain is stable, so RUSTC_BOOTSTRAP lets
# cargo-fuzz pass its -Z flags; no sanitizer is needed for safe Rust (panics are what we hunt).
set -euo pipefail
secs=${1:-60}
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/parse
# Seed with the real console logs the tests use.
cp ../tests/*.log ../tests/real-logs/*.log corpus/parse/ 2>/dev/null || true
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none parse corpus/parse -- \
  -max_total_time="$secs" -max_len=65536 -rss_limit_mb=1024 -print_final_stats=1
