# Everything only a real Windows PC can check, in one run. CI builds and tests Fooocus Guard for
# Windows under Wine, which has no job memory limit, no CPU accounting, no CPU rate control, no
# GPU performance counters, no WebView2 and no toasts; this script covers those.
#
# Needs: Rust (rustup, MSVC or GNU toolchain), Node.js 20+, Python 3 on the PATH (for the demo),
# and for the NVML tests a C compiler (cl from Visual Studio Build Tools, or gcc).
# Run from the repository root in PowerShell:
#     powershell -ExecutionPolicy Bypass -File scripts\windows\real-windows.ps1
# It prints "ok"/"FAIL"/"LOOK" lines and a summary; docs/windows-checklist.md has the expected
# output line by line. "LOOK" lines ask you to confirm something on screen (y/n).
$ErrorActionPreference = "Stop"
Set-Location (Split-Path -Parent (Split-Path -Parent $PSScriptRoot))
$script:passed = 0; $script:failed = 0; $script:log = @()
function Result($ok, $name) {
    if ($ok) { $script:passed++; Write-Host "ok   $name" } else { $script:failed++; Write-Host "FAIL $name" -ForegroundColor Red }
    $script:log += "$(if ($ok) {'ok  '} else {'FAIL'}) $name"
}
function Step($name, [scriptblock]$run) {
    Write-Host "--- $name"
    & $run
    Result ($LASTEXITCODE -eq 0) $name
}
function Look($question) {
    $a = Read-Host "LOOK $question [y/n]"
    Result ($a -match '^[yY]') $question
}

Write-Host "--- this machine"
Write-Host ("Windows " + [Environment]::OSVersion.Version + ", " + (Get-CimInstance Win32_VideoController | ForEach-Object { $_.Name }) -join "; ")
rustc --version; cargo --version; node --version; python --version

# 1. The tests gated behind FG_REAL_WINDOWS=1 (docs/windows.md, "What was verified where").
$env:FG_REAL_WINDOWS = "1"
Step "the Job Object: memory limit enforced and reported, CPU accounting, CPU rate control" {
    cargo test -p guard-contain --test windows_job -- --test-threads=1
}
Step "the supervisor end to end under a real job" {
    cargo test -p guard-core --test windows_supervise -- --test-threads=1
}
Step "the settings' commit warning and the job's commit figure" {
    cargo test -p guard-core --lib commit; if ($LASTEXITCODE -eq 0) { cargo test -p guard-sample --test windows_tree -- --nocapture }
}

# 2. The sampler against the fake nvml.dll, and the real GPU counters (WDDM's per-process VRAM).
$fake = Join-Path $env:TEMP "fooocus-guard-fake-nvml"
New-Item -ItemType Directory -Force "$fake\full", "$fake\omit" | Out-Null
$cc = if (Get-Command cl -ErrorAction SilentlyContinue) { "cl" } elseif (Get-Command gcc -ErrorAction SilentlyContinue) { "gcc" } else { $null }
if ($cc -eq "cl") {
    cl /nologo /LD tests\fake-nvml\fake_nvml.c /Fe:"$fake\full\nvml.dll" | Out-Null
    cl /nologo /LD /DOMIT_PROCESSES tests\fake-nvml\fake_nvml.c /Fe:"$fake\omit\nvml.dll" | Out-Null
} elseif ($cc -eq "gcc") {
    gcc -shared -O2 -o "$fake\full\nvml.dll" tests\fake-nvml\fake_nvml.c
    gcc -shared -O2 -DOMIT_PROCESSES -o "$fake\omit\nvml.dll" tests\fake-nvml\fake_nvml.c
}
if ($cc) {
    $env:FAKE_NVML_DLL_DIR = $fake
    Step "the sampler: NVML figures, WDDM's 'not available' never a silent 0, GPU counters opened" {
        cargo test -p guard-sample --test nvml -- --test-threads=1 --nocapture
    }
} else { Result $false "a C compiler (cl or gcc) for the fake nvml.dll" }

Step "doctor: the job object, CPU rate control, nvml.dll, the GPU status" {
    cargo run -q -p guard-cli -- doctor
}

# 3. The tray app with WebView2, its toasts, and the demo (the simulator needs Python 3).
Write-Host "--- the tray app (a debug build with the front end embedded)"
Push-Location ui; npm ci --no-audit --no-fund --loglevel=error; npm run -s build; Pop-Location
cargo build -p fooocus-guard --features custom-protocol
Result ($LASTEXITCODE -eq 0) "the tray app builds"
$app = Start-Process -PassThru target\debug\fooocus-guard.exe -ArgumentList "--demo"
Write-Host "The demo starts the Fooocus simulator; within a minute a generation runs into its 20 s timeout."
Start-Sleep -Seconds 5
Look "the 'Fooocus Guard' window opened, showing the dashboard"
Look "the tray (notification area) shows the shield icon; its menu lists Open dashboard, Start/Stop/Restart Fooocus, Quit"
Write-Host "Waiting for the timeout notification (up to 90 s)..."
Look "a toast said 'Generation stopped' ... 'your limit is 20 s' (its sender: 'Fooocus Guard' when installed, else Windows PowerShell)"
Look "the dashboard's GPU line names the VRAM source (no suffix = NVML; 'from Windows' GPU counters'; or 'whole GPU' with the reason)"
Look "closing the window leaves the app in the tray; 'Quit' from the tray ends it and the simulator (Task Manager: no python.exe left)"
if (-not $app.HasExited) { Stop-Process -Id $app.Id }

Write-Host "--- summary"
$script:log | ForEach-Object { Write-Host $_ }
Write-Host "$($script:passed) passed, $($script:failed) failed"
Write-Host "Please paste this summary (and any FAIL's output above it) into the project's issue."
exit [int]($script:failed -gt 0)
