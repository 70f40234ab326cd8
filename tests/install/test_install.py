"""End to end, offline: `fooocus-guard-cli install` downloads Fooocus 2.5.5 (the pinned upstream
snapshot) from a loopback HTTP server this test runs, checks it, unpacks it, makes its venv and
installs torch and the requirements from a wheelhouse of stand-ins (make_wheelhouse.py); then
`detect` finds it and `run` starts it under the guard until it is ready.

The stand-in wheels hold metadata only: to run, the installed venv also sees the real Gradio
of tests/upstream/.venv-gradio-3.41 (a .pth file) and tests/upstream/standins stands in for torch
and the model weights, as in the upstream suite. Fooocus's own launch.py then finds its
requirements met (no pip at start) and downloads its models through the stand-in downloader,
printing the download lines a real first start prints.

Usage: python3 tests/install/test_install.py target/debug/fooocus-guard-cli [--check NAME]

Checks: `install` (download, checksum, unpack, venv, detect) stops before the run; `run` (Fooocus
ready under the guard) needs an install, so it makes one first with its checks. No --check runs
both.
"""
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "upstream"))
from matrix import SNAPSHOTS  # noqa: E402

GRADIO_VENV = os.path.join(REPO, "tests", "upstream", ".venv-gradio-3.41")


class Ranged(http.server.BaseHTTPRequestHandler):
    """Serves one file with Range support; the first request is cut off halfway."""
    body = b""
    requests = []

    def do_GET(self):
        rng = self.headers.get("Range")
        Ranged.requests.append(rng)
        start = 0
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
        n = len(self.body)
        if start:
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, n - 1, n))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(n - start))
        self.send_header("Connection", "close")
        self.end_headers()
        part = self.body[start:]
        if len(Ranged.requests) == 1:
            part = part[: len(part) // 2]  # a truncated body: the installer resumes
        self.wfile.write(part)

    def log_message(self, *a):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(ok, what, detail=""):
    if not ok:
        raise SystemExit("FAIL %s %s" % (what, detail))
    print("ok", what)


CHECKS = ("install", "run")


def selected(args):
    """The check named by `--check NAME`, or all of them."""
    if not args:
        return CHECKS
    if len(args) != 2 or args[0] != "--check":
        raise SystemExit("usage: test_install.py CLI [--check NAME]; got %s" % " ".join(args))
    if args[1] not in CHECKS:
        raise SystemExit("unknown check %s: the install suite's checks are %s" % (args[1], ", ".join(CHECKS)))
    return (args[1],)


def main():
    cli = os.path.abspath(sys.argv[1])
    checks = selected(sys.argv[2:])
    if not os.path.isfile(os.path.join(GRADIO_VENV, "bin", "python")):
        raise SystemExit("%s is missing: run bash tests/upstream/setup.sh" % GRADIO_VENV)
    tmp = tempfile.mkdtemp(prefix="fooocus-install-e2e-")
    guard = None
    try:
        archive = os.path.join(SNAPSHOTS, "fooocus-2.5.5.tar.gz")
        with open(archive, "rb") as f:
            Ranged.body = f.read()
        sha = hashlib.sha256(Ranged.body).hexdigest()
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ranged)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = "http://127.0.0.1:%d/fooocus-2.5.5.tar.gz" % srv.server_address[1]

        # The wheelhouse: every pin of 2.5.5's requirements, and the torch its launch.py pins.
        wheels = os.path.join(tmp, "wheels")
        import tarfile
        with tarfile.open(archive) as t:
            reqs = t.extractfile("fooocus-2.5.5/requirements_versions.txt").read()
        with open(os.path.join(tmp, "reqs.txt"), "wb") as f:
            f.write(reqs)
        subprocess.run([sys.executable, os.path.join(HERE, "make_wheelhouse.py"), wheels,
                        os.path.join(tmp, "reqs.txt"), "torch==2.1.0", "torchvision==0.16.0"], check=True)

        target = os.path.join(tmp, "apps", "Fooocus")
        env = dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=wheels)
        t0 = time.time()
        p = subprocess.run([cli, "install", target, "--source", url, "--sha256", sha, "--platform", "linux",
                            "--torch", "cpu", "--json"], env=env, capture_output=True, text=True, timeout=600)
        events = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
        check(p.returncode == 0, "install exits 0 (%.1f s)" % (time.time() - t0), p.stderr[-3000:])
        phases = [e["phase"] for e in events if e["kind"] == "phase"]
        check(phases == ["download", "verify", "unpack", "environment", "torch", "requirements", "finish"],
              "every phase reported in order", phases)
        check(any(e["kind"] == "bytes" and e["phase"] == "download" for e in events), "download progress reported")
        check(len(Ranged.requests) == 2 and (Ranged.requests[1] or "").startswith("bytes="),
              "the truncated download resumed with a range request", Ranged.requests)
        check(any(e["kind"] == "log" and "Successfully installed" in e["line"] for e in events), "pip's output streamed")
        check(events[-1]["kind"] == "installed", "the last report is the install", events[-1])
        check(not any(n.startswith(".fooocus-guard-install") for n in os.listdir(os.path.dirname(target))),
              "no staging folder left")

        d = subprocess.run([cli, "detect", target, "--json"], capture_output=True, text=True, check=True)
        found = json.loads(d.stdout)
        check(len(found) == 1 and found[0]["kind"] == "venv" and found[0]["version"] == "2.5.5",
              "detect finds a venv install of 2.5.5", found)

        if "run" not in checks:
            return
        # Make the installed venv runnable here (real Gradio, stood-in torch), then run it.
        site = subprocess.run([os.path.join(target, "fooocus_env", "bin", "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        gradio_site = subprocess.run([os.path.join(GRADIO_VENV, "bin", "python"), "-c",
                                      "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(site, "zz-test-gradio.pth"), "w") as f:
            f.write(gradio_site + "\n")
        # The snapshot leaves images out; 2.5 reads this one's mtime at start-up.
        os.makedirs(os.path.join(target, "sdxl_styles", "samples"), exist_ok=True)
        open(os.path.join(target, "sdxl_styles", "samples", "fooocus_v2.jpg"), "ab").close()
        os.makedirs(os.path.join(tmp, "t"))
        ev = os.path.join(tmp, "events.jsonl")
        open(ev, "w").close()
        out = open(os.path.join(tmp, "out.txt"), "w")
        run_env = dict(os.environ,
                       PYTHONPATH=os.path.join(REPO, "tests", "upstream", "standins"),
                       GRADIO_ANALYTICS_ENABLED="False", BROWSER="true", TMPDIR=os.path.join(tmp, "t"),
                       FOOOCUS_GUARD_DATA_DIR=os.path.join(tmp, "data"), PIP_NO_INDEX="1")
        t0 = time.time()
        guard = subprocess.Popen([cli, "run", "--install", target, "--port", str(free_port()),
                                  "--startup-timeout", "240s", "--events", ev],
                                 env=run_env, stdout=out, stderr=subprocess.STDOUT)
        ready = None
        while time.time() - t0 < 240 and guard.poll() is None and not ready:
            with open(ev) as f:
                ready = next((json.loads(l) for l in f if '"ready"' in l), None)
            time.sleep(0.2)
        with open(os.path.join(tmp, "out.txt"), errors="replace") as f:
            console = f.read()
        check(ready is not None, "the installed Fooocus is ready under the guard (%.1f s)" % (time.time() - t0),
              console[-3000:])
        check("Downloading:" in console, "its first start downloaded its models (stand-in downloader)")
        check("Installing requirements" not in console and "Installing torch" not in console,
              "launch.py found everything installed (no pip at start)")
    finally:
        if guard and guard.poll() is None:
            guard.send_signal(signal.SIGTERM)
            try:
                guard.wait(60)
            except subprocess.TimeoutExpired:
                guard.kill()
        if os.environ.get("INSTALL_KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
