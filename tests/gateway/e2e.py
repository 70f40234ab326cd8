#!/usr/bin/env python3
"""The gateway against a real Gradio 3.41.2 app wired like Fooocus 2.5: a real client (gradio_client,
which speaks the queue WebSocket like the browser) starts a long generation through the guard's
gateway; the guard's timeout stops it the way that tab's Stop button would, the app stays up and
takes the next task; an app that ignores the stop is killed; the gateway's added latency is measured.

  tests/gateway/.venv/bin/python tests/gateway/e2e.py target/debug/fooocus-guard-cli
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from gradio_client import Client

HERE = os.path.dirname(os.path.abspath(__file__))
CLI = os.path.abspath(sys.argv[1])
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok  ", name)
    else:
        failed += 1
        print("FAIL", name, detail)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def make_install(d):
    """A Fooocus-shaped folder whose entry script runs the Gradio app with the venv's python."""
    os.makedirs(os.path.join(d, "modules"), exist_ok=True)
    with open(os.path.join(d, "entry_with_update.py"), "w") as f:
        f.write("import os, sys\nos.execv(sys.executable, [sys.executable, %r] + sys.argv[1:])\n" % os.path.join(HERE, "fooocus_like_app.py"))
    for n in ("launch.py", "webui.py", "modules/async_worker.py"):
        open(os.path.join(d, n), "w").close()
    with open(os.path.join(d, "fooocus_version.py"), "w") as f:
        f.write("version = '2.5.5'\n")
    # The venv's interpreter (a symlink would lose the venv and its gradio).
    py = os.path.join(d, "fooocus_env", "bin", "python")
    os.makedirs(os.path.dirname(py), exist_ok=True)
    with open(py, "w") as f:
        f.write('#!/bin/sh\nexec %s "$@"\n' % os.path.join(HERE, ".venv", "bin", "python"))
    os.chmod(py, 0o755)


def events(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def wait_event(path, pred, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        for e in events(path):
            if pred(e):
                return e
        time.sleep(0.1)
    out = os.path.join(os.path.dirname(path), "out.txt")
    raise AssertionError("event not seen; events: %s\noutput:\n%s" % (events(path), open(out).read()[-3000:] if os.path.exists(out) else ""))


def start_guard(extra_env=None, timeout="4s", port=None, metrics_port=None):
    """The CLI supervising the app through the gateway; returns (guard, events path, user port)."""
    tmp = tempfile.mkdtemp()
    inst = os.path.join(tmp, "Fooocus")
    make_install(inst)
    port = port or free_port()
    ev = os.path.join(tmp, "events.jsonl")
    cfg = os.path.join(tmp, "config.toml")
    with open(cfg, "w") as f:
        if metrics_port:
            f.write("[metrics]\nenabled = true\nport = %d\n" % metrics_port)
    open(ev, "w").close()
    env = dict(os.environ, FOOOCUS_GUARD_DATA_DIR=os.path.join(tmp, "data"), **(extra_env or {}))
    guard = subprocess.Popen([CLI, "run", "--install", inst, "--port", str(port), "--timeout", timeout, "--grace", "5s",
                              "--config", cfg, "--events", ev], env=env, stdout=open(os.path.join(tmp, "out.txt"), "w"), stderr=subprocess.STDOUT)
    return guard, ev, port


def gauge(port, name):
    try:
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_gauge(port, name, value, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if gauge(port, name) == value:
            return True
        time.sleep(0.2)
    return False


def stop_guard(guard):
    guard.send_signal(signal.SIGTERM)
    guard.wait(60)


def fooocus_argv(ev, nth=0):
    started = [e for e in events(ev) if e["event"] == "started"][nth]
    with open("/proc/%d/cmdline" % started["pid"], "rb") as f:
        return f.read().split(b"\0")


def run_case(ignore_stop):
    tmp = tempfile.mkdtemp()
    inst = os.path.join(tmp, "Fooocus")
    make_install(inst)
    port = free_port()
    ev = os.path.join(tmp, "events.jsonl")
    cfg = os.path.join(tmp, "config.toml")
    open(cfg, "w").close()
    open(ev, "w").close()
    env = dict(os.environ, FOOOCUS_GUARD_DATA_DIR=os.path.join(tmp, "data"), SIM_IGNORE_STOP="1" if ignore_stop else "0")
    guard = subprocess.Popen([CLI, "run", "--install", inst, "--port", str(port), "--timeout", "4s", "--grace", "5s",
                              "--config", cfg, "--events", ev], env=env, stdout=open(os.path.join(tmp, "out.txt"), "w"), stderr=subprocess.STDOUT)
    try:
        wait_event(ev, lambda e: e["event"] == "ready", 180)
        client = Client("http://127.0.0.1:%d/" % port, verbose=False)
        job = client.submit("a lighthouse", fn_index=0)
        stopped = wait_event(ev, lambda e: e["event"] == "generation_stopped", 120)
        return guard, client, job, stopped, ev, port
    except Exception:
        guard.send_signal(signal.SIGTERM)
        guard.wait(30)
        raise


def latency(port_direct, port_gw, n=300):
    def one(port):
        t = time.perf_counter()
        urllib.request.urlopen("http://127.0.0.1:%d/config" % port, timeout=5).read()
        return (time.perf_counter() - t) * 1000
    for p in (port_direct, port_gw):
        for _ in range(20):
            one(p)
    d = sorted(one(port_direct) for _ in range(n))
    g = sorted(one(port_gw) for _ in range(n))
    return statistics.median(d), statistics.median(g), d[int(n * 0.99)], g[int(n * 0.99)]


# 1. The stop goes through: graceful, the app stays up and takes the next task.
guard, client, job, stopped, ev, port = run_case(ignore_stop=False)
try:
    check("a timed-out generation is stopped gracefully through the gateway", stopped.get("how") == "graceful", stopped)
    check("...within the grace period", stopped["steps"][0]["result"] == "ended" and stopped["steps"][0]["took_s"] < 5, stopped)
    out = open(os.path.join(os.path.dirname(ev), "out.txt")).read()
    check("the app itself said 'User stopped' (its own Stop handler ran)", "User stopped" in out)
    check("Fooocus was not restarted", not any(e["event"] == "exited" for e in events(ev)))
    job2 = client.submit("again", fn_index=0)
    fin = wait_event(ev, lambda e: e["event"] == "generation_started" and e["generation_id"] >= 2, 60)
    check("the next generation runs on the same process", fin is not None)
    # Latency the gateway adds (the upstream port is Fooocus's own; read it from `started`).
    args = fooocus_argv(ev)
    internal = int(args[args.index(b"--port") + 1])
    md, mg, pd, pg = latency(internal, port)
    print("gateway latency, GET /config on loopback: direct %.2f ms, through the gateway %.2f ms (median); p99 %.2f / %.2f ms; added %.2f ms"
          % (md, mg, pd, pg, mg - md))
finally:
    guard.send_signal(signal.SIGTERM)
    guard.wait(60)

# 2. An app that ignores the stop: the guard escalates to a kill after the grace period.
guard, client, job, stopped, ev, port = run_case(ignore_stop=True)
try:
    check("an ignored stop escalates to a kill", stopped.get("how") == "killed" and stopped["steps"][0]["result"] == "ignored", stopped)
    wait_event(ev, lambda e: e["event"] == "ready" and sum(1 for x in events(ev) if x["event"] == "ready") >= 2, 180)
    check("Fooocus is restarted and ready again", sum(1 for x in events(ev) if x["event"] == "ready") >= 2)
finally:
    guard.send_signal(signal.SIGTERM)
    guard.wait(60)

# 3. Uploads and downloads pass byte for byte; a fork whose console shows no task is still
#    tracked, from the queue alone (start, and the end when its call completes).
guard, ev, port = start_guard({"SIM_QUIET": "1", "SIM_STEPS": "30", "SIM_STEP_SECONDS": "0.05"}, timeout="60s")
try:
    wait_event(ev, lambda e: e["event"] == "ready", 180)
    client = Client("http://127.0.0.1:%d/" % port, verbose=False)
    src = os.path.join(tempfile.mkdtemp(), "input.png")
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with open(src, "wb") as f:
        f.write(payload)
    got = client.predict(src, fn_index=3)
    with open(got, "rb") as f:
        back = f.read()
    check("a 3 MiB upload and its download pass through the gateway byte for byte", back == payload,
          "sent %d bytes, got %d" % (len(payload), len(back)))
    client.predict("a quiet lighthouse", fn_index=0)
    fin = wait_event(ev, lambda e: e["event"] == "generation_finished", 60)
    check("a generation the console never showed is tracked from the queue", fin["closed_by"] == "queue_end"
          and fin["outcome"] == "completed" and fin["seconds"] >= 1.0, fin)
    check("...and only one", sum(1 for e in events(ev) if e["event"] == "generation_started") == 1, events(ev))
finally:
    stop_guard(guard)

# 4. The user's port is taken: no gateway, Fooocus is started directly on the user's port, and the
#    guard says graceful stop is unavailable and why. Once the port is free, the next start has
#    the gateway again.
blocker = socket.socket()
blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
blocker.bind(("127.0.0.1", 0))
blocker.listen(1)
taken = blocker.getsockname()[1]
metrics = free_port()
guard, ev, port = start_guard(port=taken, metrics_port=metrics)
try:
    warn = wait_event(ev, lambda e: e["event"] == "warning" and "graceful stop is unavailable" in e["message"], 60)
    check("a taken port: the guard says graceful stop is unavailable, and why",
          ("127.0.0.1:%d" % taken) in warn["message"] and "another program" in warn["message"], warn)
    wait_event(ev, lambda e: e["event"] == "started", 60)
    argv = fooocus_argv(ev)
    check("...and starts Fooocus directly on the user's port", argv[argv.index(b"--port") + 1] == str(taken).encode(), argv)
    check("...and its metrics say graceful stop is unavailable", wait_gauge(metrics, "fooocus_guard_graceful_stop_available", 0.0),
          gauge(metrics, "fooocus_guard_graceful_stop_available"))
    # The app cannot listen there either and exits; the port is freed; the restart tries the
    # gateway again.
    wait_event(ev, lambda e: e["event"] == "exited", 120)
    blocker.close()
    ready = wait_event(ev, lambda e: e["event"] == "ready", 180)
    n = sum(1 for e in events(ev) if e["event"] == "started")
    argv = fooocus_argv(ev, n - 1)
    check("once the port is free, Fooocus comes back behind the gateway",
          argv[argv.index(b"--port") + 1] != str(taken).encode() and (":%d" % taken) in ready["url"], (argv, ready))
    check("...and graceful stop is available again", wait_gauge(metrics, "fooocus_guard_graceful_stop_available", 1.0),
          gauge(metrics, "fooocus_guard_graceful_stop_available"))
finally:
    blocker.close()
    stop_guard(guard)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
