#!/usr/bin/env python3
"""The gateway against a real Gradio 3.41.2 app wired like Fooocus 2.5: a real client (gradio_client,
which speaks the queue WebSocket like the browser) starts a long generation through the guard's
gateway; the guard's timeout stops it the way that tab's Stop button would, the app stays up and
takes the next task; an app that ignores the stop is killed; the gateway's added latency is measured.

  tests/gateway/.venv/bin/python tests/gateway/e2e.py target/debug/fooocus-guard-cli [--check NAME]...

Checks (each runs alone): graceful-stop, ignored-stop, transfer, port-taken, lan-port-taken.
"""
import json
import os
import resource
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
sys.path.insert(0, os.path.dirname(HERE))
from testkit import Tally, events, free_port  # noqa: E402

CLI = os.path.abspath(sys.argv[1])
tally = Tally()
check = tally.check
# The cases, in order, by name: `--check NAME` (repeatable) runs only those (each one sets up
# its own guard and app, so any one runs alone).
CASES = {}


def case(name):
    def register(f):
        CASES[name] = f
        return f
    return register


def selected(args):
    """The cases named by `--check NAME` arguments, or all of them."""
    names = []
    while args:
        if args[0] != "--check" or len(args) < 2:
            sys.exit("usage: e2e.py CLI [--check NAME]...; got %s" % " ".join(args))
        names.append(args[1])
        args = args[2:]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        sys.exit("unknown check %s: the gateway's checks are %s" % (", ".join(unknown), ", ".join(CASES)))
    return names or list(CASES)


def make_install(d):
    """A Fooocus-shaped folder whose entry script runs the Gradio app with the venv's python."""
    os.makedirs(os.path.join(d, "modules"), exist_ok=True)
    # The guard starts launch.py (entry_with_update.py only with auto_update): both run the app.
    for n in ("entry_with_update.py", "launch.py"):
        with open(os.path.join(d, n), "w") as f:
            f.write("import os, sys\nos.execv(sys.executable, [sys.executable, %r] + sys.argv[1:])\n" % os.path.join(HERE, "fooocus_like_app.py"))
    for n in ("webui.py", "modules/async_worker.py"):
        open(os.path.join(d, n), "w").close()
    with open(os.path.join(d, "fooocus_version.py"), "w") as f:
        f.write("version = '2.5.5'\n")
    # The venv's interpreter (a symlink would lose the venv and its gradio).
    py = os.path.join(d, "fooocus_env", "bin", "python")
    os.makedirs(os.path.dirname(py), exist_ok=True)
    with open(py, "w") as f:
        f.write('#!/bin/sh\nexec %s "$@"\n' % os.path.join(HERE, ".venv", "bin", "python"))
    os.chmod(py, 0o755)


def wait_event(path, pred, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        for e in events(path):
            if pred(e):
                return e
        time.sleep(0.1)
    out = os.path.join(os.path.dirname(path), "out.txt")
    raise AssertionError("event not seen; events: %s\noutput:\n%s" % (events(path), open(out).read()[-3000:] if os.path.exists(out) else ""))


def start_guard(extra_env=None, timeout="4s", port=None, metrics_port=None, config=""):
    """The CLI supervising the app through the gateway; returns (guard, events path, user port)."""
    tmp = tempfile.mkdtemp()
    inst = os.path.join(tmp, "Fooocus")
    make_install(inst)
    port = port or free_port()
    ev = os.path.join(tmp, "events.jsonl")
    cfg = os.path.join(tmp, "config.toml")
    with open(cfg, "w") as f:
        f.write(config)
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


def desktop_file_limit():
    """The guard runs with the file limit a desktop session gives (1024), as users run it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


def idle_flood(port, n):
    """n connections to the gateway that never send a byte (no token needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 256), hard))
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    return socks


def run_case(ignore_stop, flood=0):
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
                              "--config", cfg, "--events", ev], env=env, stdout=open(os.path.join(tmp, "out.txt"), "w"), stderr=subprocess.STDOUT,
                             preexec_fn=desktop_file_limit)
    try:
        wait_event(ev, lambda e: e["event"] == "ready", 180)
        flooded = idle_flood(port, flood)
        client = Client("http://127.0.0.1:%d/" % port, verbose=False)
        client.flooded = flooded
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


# 1. The stop goes through: graceful, the app stays up and takes the next task; and all that with
#    2000 connections held open against the gateway that never send a byte (the guard has the
#    1024 files a desktop session gives it).
@case("graceful-stop")
def case_graceful_stop():
    guard, client, job, stopped, ev, port = run_case(ignore_stop=False, flood=2000)
    try:
        check("2000 idle connections: a real client is still served", client is not None)
        check("...and a timed-out generation is stopped gracefully through the gateway", stopped.get("how") == "graceful", stopped)
        check("...within the grace period", stopped["steps"][0]["result"] == "ended" and stopped["steps"][0]["took_s"] < 5, stopped)
        out = open(os.path.join(os.path.dirname(ev), "out.txt")).read()
        check("the app itself said 'User stopped' (its own Stop handler ran)", "User stopped" in out)
        check("Fooocus was not restarted", not any(e["event"] == "exited" for e in events(ev)))
        job2 = client.submit("again", fn_index=0)
        fin = wait_event(ev, lambda e: e["event"] == "generation_started" and e["generation_id"] >= 2, 60)
        check("the next generation runs on the same process", fin is not None)
        for sock in client.flooded:
            sock.close()
        # New clients once the flood has gone: each request answered, or the error said.
        errors = []
        import http.client
        for i in range(50):
            lp = None
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/config" % port, timeout=10).read()
            except Exception as e:  # noqa: BLE001 (the check reports it)
                errors.append("client %d port %s at %.3f: %r" % (i, lp, time.time(), e))
        check("after the flood, 50 new clients in a row are each answered", not errors, (len(errors), errors[:3]))
    finally:
        guard.send_signal(signal.SIGTERM)
        guard.wait(60)


# 2. An app that ignores the stop: the guard escalates to a kill after the grace period.
@case("ignored-stop")
def case_ignored_stop():
    guard, client, job, stopped, ev, port = run_case(ignore_stop=True)
    try:
        check("an ignored stop escalates to a kill", stopped.get("how") == "killed" and stopped["steps"][0]["result"] == "ignored", stopped)
        wait_event(ev, lambda e: e["event"] == "ready" and sum(1 for x in events(ev) if x["event"] == "ready") >= 2, 180)
        check("Fooocus is restarted and ready again", sum(1 for x in events(ev) if x["event"] == "ready") >= 2)
        argv = fooocus_argv(ev, 1)
        check("...behind a new gateway on the same port (the old one let go of it first)",
              argv[argv.index(b"--port") + 1] != str(port).encode()
              and not any(e["event"] == "warning" and "graceful stop is unavailable" in e["message"] for e in events(ev)), argv)
    finally:
        guard.send_signal(signal.SIGTERM)
        guard.wait(60)


# 3. Uploads and downloads pass byte for byte; a fork whose console shows no task is still
#    tracked, from the queue alone (start, and the end when its call completes).
@case("transfer")
def case_transfer():
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
        # Latency the gateway adds, measured here, away from case 1's flood of 2000 connections
        # (the upstream port is Fooocus's own; read it from `started`).
        args = fooocus_argv(ev)
        internal = int(args[args.index(b"--port") + 1])
        md, mg, pd, pg = latency(internal, port)
        print("gateway latency, GET /config on loopback: direct %.2f ms, through the gateway %.2f ms (median); p99 %.2f / %.2f ms; added %.2f ms"
              % (md, mg, pd, pg, mg - md))
        check("a generation the console never showed is tracked from the queue", fin["closed_by"] == "queue_end"
              and fin["outcome"] == "completed" and fin["seconds"] >= 1.0, fin)
        check("...and only one", sum(1 for e in events(ev) if e["event"] == "generation_started") == 1, events(ev))
    finally:
        stop_guard(guard)


# 4. The user's port is taken: no gateway, Fooocus is started directly on the user's port, and the
#    guard says graceful stop is unavailable and why. Once the port is free, the next start has
#    the gateway again.
@case("port-taken")
def case_port_taken():
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


# 5. Fooocus shared on the network with a token, and the gateway's port briefly taken: Fooocus
#    must not be reachable from the network without the gateway. The network is a namespace this
#    test creates, joined to this machine by a veth pair with addresses of its own (10.213.0.0/30);
#    no traffic leaves loopback and that pair.
NS = "fg-gw-%d" % os.getpid()
HOST_IF = "fggw%d" % (os.getpid() % 100000)


def sh(*a):
    subprocess.run(a, check=True, capture_output=True)


def reach_from_namespace(port):
    """What a computer on the network gets from 10.213.0.1:port: 'refused', or the first line."""
    code = ("import socket,sys\ns=socket.create_connection(('10.213.0.1',%d),timeout=5)\n"
            "s.sendall(b'GET / HTTP/1.1\\r\\nHost: 10.213.0.1\\r\\nConnection: close\\r\\n\\r\\n')\n"
            "print(s.recv(200).split(b'\\r\\n')[0].decode())" % port)
    r = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", code], capture_output=True, text=True)
    if "ConnectionRefusedError" in r.stderr:
        return "refused"
    return r.stdout.strip() or r.stderr.strip()[-200:]


@case("lan-port-taken")
def case_lan_port_taken():
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        check("the gateway's port taken with a token: Fooocus not on the network (needs root and ip netns)", False,
              "run as root with iproute2")
    else:
        try:
            sh("ip", "netns", "add", NS)
            sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "fgpeer", "netns", NS)
            sh("ip", "addr", "add", "10.213.0.1/30", "dev", HOST_IF)
            sh("ip", "link", "set", HOST_IF, "up")
            sh("ip", "netns", "exec", NS, "ip", "addr", "add", "10.213.0.2/30", "dev", "fgpeer")
            sh("ip", "netns", "exec", NS, "ip", "link", "set", "fgpeer", "up")
            sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
            blocker = socket.socket()
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blocker.bind(("0.0.0.0", 0))
            blocker.listen(1)
            taken = blocker.getsockname()[1]
            metrics = free_port()
            guard, ev, port = start_guard(
                {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(taken)}, port=taken, metrics_port=metrics,
                config='[launch]\nlisten = "0.0.0.0"\n[gateway]\ntoken = "lan-token-123"\n')
            try:
                warn = wait_event(ev, lambda e: e["event"] == "warning" and "graceful stop is unavailable" in e["message"], 60)
                # The port is free again before Fooocus binds it (it takes seconds to import Gradio).
                blocker.close()
                check("gateway port taken with a token: the guard says Fooocus is not shared on the network, and why",
                      "not shared on the network" in warn["message"] and "another program" in warn["message"]
                      and "lan-token-123" not in warn["message"], warn)
                wait_event(ev, lambda e: e["event"] == "ready", 180)
                argv = fooocus_argv(ev)
                check("...Fooocus is started without --listen", b"--listen" not in argv, argv)
                started = [e for e in events(ev) if e["event"] == "started"][0]
                with open("/proc/%d/environ" % started["pid"], "rb") as f:
                    environ = f.read().split(b"\0")
                check("...and without Gradio's listen variables from the guard's environment",
                      not any(v.startswith(b"GRADIO_SERVER") for v in environ), [v for v in environ if v.startswith(b"GRADIO")])
                local = urllib.request.urlopen("http://127.0.0.1:%d/config" % taken, timeout=5).status
                check("...it is up on this computer", local == 200, local)
                got = reach_from_namespace(taken)
                check("...and a computer on the network cannot reach it", got == "refused", got)
                check("...the metrics say graceful stop is unavailable", wait_gauge(metrics, "fooocus_guard_graceful_stop_available", 0.0),
                      gauge(metrics, "fooocus_guard_graceful_stop_available"))
                out = open(os.path.join(os.path.dirname(ev), "out.txt")).read()
                check("...and the token is in no output", "lan-token-123" not in out and
                      all("lan-token-123" not in json.dumps(e) for e in events(ev)))
            finally:
                blocker.close()
                stop_guard(guard)
            # The same, with the gateway able to start: the network gets the gateway, which asks
            # for the token.
            guard, ev, port = start_guard(port=free_port(), config='[launch]\nlisten = "0.0.0.0"\n[gateway]\ntoken = "lan-token-123"\n')
            try:
                wait_event(ev, lambda e: e["event"] == "ready", 180)
                got = reach_from_namespace(port)
                check("with the gateway up, the network gets the gateway's 401", got.startswith("HTTP/1.1 401"), got)
            finally:
                stop_guard(guard)
        finally:
            subprocess.run(["ip", "netns", "del", NS], capture_output=True)
            subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True)


for name in selected(sys.argv[2:]):
    CASES[name]()
sys.exit(tally.summary())
