#!/usr/bin/env python3
"""Soak test of the guard's promises when it dies (not run by CI: minutes long).

  scripts/soak.py [--kills N] [--cli target/debug/fooocus-guard-cli]

1. N times: start `fooocus-guard-cli run` on a simulated Fooocus 2.5 whose tasks outlive a 1 s
   timeout and which spawns children (one of them setsid), wait until a limit stopped a
   generation (its breach is in the events file), then SIGKILL the guard mid-generation of the
   next task. Counted:
   - orphans: Fooocus processes (the tree's pids) still alive 10 s after the kill (the warden
     must have killed them);
   - records lost: breaches the guard announced (events file) that are missing from the history
     database once the guard is gone.
2. A generation that breaches its cap every time (`--restart never --max-restarts 3`): the
   guard must give up (exit 3) instead of looping, and say which limit.
Prints the figures; exits 1 if either count is not 0 or the give-up did not happen.
"""
import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIM = os.path.join(ROOT, "tests", "sim", "fooocus_sim.py")
sys.path.insert(0, os.path.join(ROOT, "tests"))
from testkit import alive, events, free_port, wait  # noqa: E402


def make_install(tmp, scenario):
    path = os.path.join(tmp, "Fooocus")
    scen = os.path.join(tmp, "scenario.json")
    with open(scen, "w") as f:
        json.dump(scenario, f)
    subprocess.run([sys.executable, SIM, "make-install", path, "--sim-version", "2.5", "--scenario", scen],
                   check=True, capture_output=True)
    return path


def soak(cli, kills):
    tmp = tempfile.mkdtemp(prefix="fg-soak-")
    pids_file = os.path.join(tmp, "pids")
    task = {"delay": 0.2, "images": 2, "steps": 1000, "step_seconds": 0.05}
    inst = make_install(tmp, {"startup_seconds": 0.01, "spawn_children": True, "pids_file": pids_file,
                              "tasks": [task, task, task]})
    data = os.path.join(tmp, "data")
    env = dict(os.environ, FOOOCUS_GUARD_DATA_DIR=data, FOOOCUS_GUARD_CONFIG_DIR=os.path.join(tmp, "config"))
    orphans, announced, timeouts = 0, 0, 0
    start = time.time()
    for i in range(kills):
        ev = os.path.join(tmp, "events-%d.jsonl" % i)
        open(pids_file, "w").close()
        g = subprocess.Popen([cli, "run", "--install", inst, "--port", str(free_port()), "--no-gateway",
                              "--timeout", "1s", "--grace", "1s", "--events", ev],
                             env=env, stdout=subprocess.DEVNULL, stderr=open(ev + ".err", "w"))
        # A limit stopped the first generation, and the next one is running.
        ok = wait(lambda: sum(e.get("event") == "generation_started" for e in events(ev)) >= 2
                  and any(e.get("event") == "generation_stopped" for e in events(ev)), 30)
        if not ok:
            timeouts += 1
            print("  run %d never reached its second generation; the guard said:\n    %s" % (
                i, "\n    ".join(open(ev + ".err").read().splitlines()[-8:])), flush=True)
        tree = [int(p) for p in open(pids_file).read().split()]
        started = [e for e in events(ev) if e.get("event") == "started"]
        tree += [s["pid"] for s in started]
        g.send_signal(signal.SIGKILL)
        g.wait()
        if not wait(lambda: not any(alive(p) for p in tree), 10):
            left = [p for p in tree if alive(p)]
            orphans += len(left)
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        announced += sum(e.get("event") == "limit_breached" for e in events(ev))
        if (i + 1) % 20 == 0:
            print("  %d kills, %.0f s" % (i + 1, time.time() - start), flush=True)
    # The history as the next guard would read it.
    db = sqlite3.connect(os.path.join(data, "history.sqlite3"))
    stored = db.execute("SELECT COUNT(*) FROM breaches").fetchone()[0]
    lost = max(0, announced - stored)
    print("guard killed with SIGKILL mid-generation %d times in %.0f s: orphans %d, breach records "
          "announced %d, stored %d, lost %d (runs that never reached their second generation: %d)"
          % (kills, time.time() - start, orphans, announced, stored, lost, timeouts))
    return orphans == 0 and lost == 0


def give_up(cli):
    tmp = tempfile.mkdtemp(prefix="fg-soak-")
    task = {"delay": 0.2, "images": 2, "steps": 1000, "step_seconds": 0.05}
    inst = make_install(tmp, {"startup_seconds": 0.01, "tasks": [task]})
    ev = os.path.join(tmp, "events.jsonl")
    env = dict(os.environ, FOOOCUS_GUARD_DATA_DIR=os.path.join(tmp, "data"),
               FOOOCUS_GUARD_CONFIG_DIR=os.path.join(tmp, "config"))
    t0 = time.time()
    code = subprocess.run([cli, "run", "--install", inst, "--port", str(free_port()), "--no-gateway",
                           "--timeout", "1s", "--restart", "never", "--max-restarts", "3", "--events", ev],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300).returncode
    es = events(ev)
    kills = sum(e.get("event") == "limit_breached" for e in es)
    why = next((e.get("reason") for e in es if e.get("event") == "gave_up"), None)
    print("a generation that breaches every time: %d kills, then exit %d after %.0f s: %s"
          % (kills, code, time.time() - t0, why))
    return code == 3 and why is not None and "timeout" in why


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--cli", default=os.path.join(ROOT, "target", "debug", "fooocus-guard-cli"))
    a = ap.parse_args()
    ok = soak(a.cli, a.kills)
    ok = give_up(a.cli) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
