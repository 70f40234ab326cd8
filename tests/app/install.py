#!/usr/bin/env python3
"""The real app installs Fooocus on its first run (issue 15), driven through tauri-driver: the
first-run view's install panel is given a package the user "already downloaded" (the pinned
2.5.5 snapshot), shows each step's progress, and the Fooocus it installed starts under the guard
until it is ready. Offline: pip installs from a wheelhouse of stand-ins (PIP_NO_INDEX and
PIP_FIND_LINKS in the app's environment, set by the caller from `prepare`), and the stand-in
torch wheel's .pth lets the new venv see the real Gradio of tests/upstream (as
tests/install/test_install.py does by hand for the CLI).

  install.py prepare DIR          writes DIR/Fooocus-2.5.5.tar.gz and the wheelhouse DIR/wheels
  install.py DASHBOARD DIR        drives the window (tauri-driver on 127.0.0.1:4444; the guard,
                                  fooocus-guard without --demo, runs with a fresh data folder)
"""
import base64
import os
import subprocess
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "upstream"))
from testkit import Tally  # noqa: E402
from webdriver import call, open_session  # noqa: E402
from matrix import SNAPSHOTS  # noqa: E402

GRADIO_VENV = os.path.join(REPO, "tests", "upstream", ".venv-gradio-3.41")
ARCHIVE = "Fooocus-2.5.5.tar.gz"


def prepare(d):
    os.makedirs(d, exist_ok=True)
    src = os.path.join(SNAPSHOTS, "fooocus-2.5.5.tar.gz")
    # The snapshot leaves images out; 2.5 reads this one's mtime at start-up.
    with tarfile.open(src) as t, tarfile.open(os.path.join(d, ARCHIVE), "w:gz") as out:
        for m in t.getmembers():
            out.addfile(m, t.extractfile(m) if m.isfile() else None)
        jpg = tarfile.TarInfo("fooocus-2.5.5/sdxl_styles/samples/fooocus_v2.jpg")
        out.addfile(jpg, None)
        reqs = t.extractfile("fooocus-2.5.5/requirements_versions.txt").read()
    with open(os.path.join(d, "reqs.txt"), "wb") as f:
        f.write(reqs)
    gradio_site = subprocess.run([os.path.join(GRADIO_VENV, "bin", "python"), "-c",
                                  "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
    standins = os.path.join(REPO, "tests", "upstream", "standins")
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "install", "make_wheelhouse.py"),
                    os.path.join(d, "wheels"), "--pth", standins, "--pth", gradio_site,
                    os.path.join(d, "reqs.txt"), "torch==2.1.0", "torchvision==0.16.0"], check=True)


def drive(app, d):
    sid, run = open_session(app)
    text = lambda sel: run("const done = arguments[arguments.length-1]; done(document.querySelector(arguments[0])?.textContent ?? null);", sel)
    tally = Tally()
    check = tally.check
    archive = os.path.join(d, ARCHIVE)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and not (text("#install-summary") or ""):
            time.sleep(0.5)
        check("the first run offers to install Fooocus", "disk" in (text("#install-summary") or ""), text("#install-summary"))
        run("""const done = arguments[arguments.length-1];
            document.querySelector('#install-own').open = true;
            document.querySelector('#install-source').value = arguments[0];
            document.querySelector('#install-source-use').click(); setTimeout(() => done(null), 300);""", archive)
        deadline = time.time() + 30
        while time.time() < deadline and archive not in (text("#install-summary") or ""):
            time.sleep(0.5)
        summary = text("#install-summary") or ""
        check("the plan names the package the user gave", archive in summary, summary)
        run("const done = arguments[arguments.length-1]; document.querySelector('#install-start').click(); done(null);")
        steps, listed, shot, state, problem = [], [], False, None, None
        deadline = time.time() + 600
        while time.time() < deadline:
            s = text("#install-step") or ""
            if s.startswith("Step ") and s.split(":")[0] not in [x.split(":")[0] for x in steps]:
                steps.append(s)
                if not shot and "requirements" in s.lower():
                    png = call("GET", f"/session/{sid}/screenshot")
                    os.makedirs(os.path.join(REPO, "artifacts", "app"), exist_ok=True)
                    with open(os.path.join(REPO, "artifacts", "app", "app-installing.png"), "wb") as f:
                        f.write(base64.b64decode(png))
                    shot = True
            # The checklist of finished steps only grows during a run; the view moves on to the
            # dashboard once the install is saved, so the longest list seen is kept.
            now = run("const done = arguments[arguments.length-1]; done([...document.querySelectorAll('#install-done li')].map(li => li.dataset.phase));") or []
            if len(now) > len(listed):
                listed = now
            problem = text("#install-problem:not(.hidden)")
            if problem:
                break
            state = run("const done = arguments[arguments.length-1]; window.__TAURI_INTERNALS__.invoke('get_status').then(s => done(s.state), e => done('ERR ' + e));")
            if state in ("ready", "generating"):
                break
            time.sleep(1)
        print("install steps the panel showed:", " | ".join(steps), flush=True)
        check("no install step failed", not problem, problem)
        job = run("const done = arguments[arguments.length-1]; window.__TAURI_INTERNALS__.invoke('install_status').then(done, e => done('ERR ' + e));") or {}
        finished = [d.get("phase") for d in job.get("done", [])] if isinstance(job, dict) else []
        print("steps the panel listed as done:", " | ".join(listed), flush=True)
        check("the install finished every step of its plan, in order",
              finished == ["verify", "unpack", "environment", "torch", "requirements", "finish"], job)
        check("the panel listed the steps as they finished", len(listed) >= 4 and listed == finished[:len(listed)], (listed, finished))
        check("the Fooocus the app installed is ready under the guard", state == "ready", state)
        settings = run("const done = arguments[arguments.length-1]; window.__TAURI_INTERNALS__.invoke('get_settings').then(done, e => done('ERR ' + e));")
        root = (settings or {}).get("install_path") or ""
        check("the new install is saved as the app's Fooocus", root.endswith("Fooocus") and os.path.isfile(os.path.join(root, "entry_with_update.py")), settings)
        check("its venv was made by the install", os.path.isfile(os.path.join(root, "fooocus_env", "bin", "python")), root)
        check("nothing of the install's staging is left", not [n for n in os.listdir(os.path.dirname(root) or ".") if n.startswith(".fooocus-guard-install")] if root else False)
    finally:
        try:
            call("DELETE", f"/session/{sid}")
        except Exception:
            pass
    return tally.summary()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    elif len(sys.argv) == 3:
        sys.exit(drive(sys.argv[1], sys.argv[2]))
    else:
        raise SystemExit(__doc__)
