#!/usr/bin/env bash
# Windows from Linux: the workspace (the Tauri app included) type-checked and linted for
# x86_64-pc-windows-gnu, and the libraries' tests -- the Job Object backend among them -- under Wine;
# the installer built and installed, uninstalled and checked under Wine.
set -euo pipefail
cd "$(dirname "$0")/../.."
# `Caused by` and cargo's `process didn't exit successfully` say how a test program ended when it
# printed nothing (once, a test binary under Wine ended so: its exit status was not shown).
bash scripts/windows/test.sh 2>&1 | grep -E "^(---|test result|test .* FAILED|error|warning|thread .* panicked|  left|  right|windows setup|FAIL|note |installer:|Caused by|  process didn't exit)" 
test "${PIPESTATUS[0]}" -eq 0
