#!/usr/bin/env python3
"""Each version's real web UI, queue and worker loop under the guard.

For each UI version in matrix.py: the snapshot is unpacked as a venv install whose python is the
venv with the Gradio that version pins (setup.sh), with only torch, the model libraries and the
diffusion stood in (standins/). `fooocus-guard-cli run --install DIR --timeout 8s` starts it; the
test waits for `ready`, clicks Generate through the UI's own /config (ui_driver.py) with a stand-in
step slow enough to pass the timeout, and checks the guard's events: the generation starts, the
timeout is breached, the generation is stopped (gracefully where the version has a stop path the
guard can reach), Fooocus itself printed `User stopped`, and the next generation runs to completion.

  tests/upstream/.venv-gradio-3.41/bin/python tests/upstream/test_ui.py target/debug/fooocus-guard-cli [VERSION...]
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from testkit import events, free_port  # noqa: E402
import trees  # noqa: E402
import ui_driver  # noqa: E402
from matrix import EXPECTED_FAIL, VERSIONS  # noqa: E402

SLOW_STEP_S = "0.5"  # 30 steps x 2 images: 30 s, well past the 8 s timeout
FAST_STEP_S = "0.02"  # the next generation: about 1.5 s


class ApiClient:
    """Fooocus-API's REST client: one text-to-image job, asynchronous (the call returns its job)."""

    def __init__(self, url, prompt):
        self.url, self.prompt, self.errors = url.rstrip("/"), prompt, []

    def generate(self):
        body = json.dumps({"prompt": self.prompt, "image_number": 2, "async_process": True}).encode()
        req = urllib.request.Request(self.url + "/v1/generation/text-to-image", body, {"Content-Type": "application/json"})
        t = threading.Thread(target=lambda: urllib.request.urlopen(req, timeout=60).read(), daemon=True)
        t.start()
        return t


class Run:
    def __init__(self, cli, v):
        self.v = v
        self.tmp = tempfile.mkdtemp(prefix="fooocus-upstream-ui-")
        # Fooocus-API's own server and its Fooocus run in the 3.41 venv (which has its packages).
        venv = os.path.join(HERE, ".venv-gradio-%s" % (v["gradio"] or "3.41.2").rsplit(".", 1)[0], "bin", "python")
        self.tree = trees.unpack(v["archive"], self.tmp, venv)
        if v["fork"] == "fooocus-api" and v["standin"]:
            # 0.3.33 clones Fooocus 2.3.0 into repositories/Fooocus at install time: 2.3.1 stands in.
            os.makedirs(os.path.join(self.tree, "repositories"), exist_ok=True)
            os.rename(trees.unpack(v["standin"], self.tmp), os.path.join(self.tree, "repositories", "Fooocus"))
        comfy = {}
        if v["comfy"]:
            comfy["FOOOCUS_STANDIN_COMFY"] = os.path.join(trees.unpack(v["comfy"], self.tmp), "backend", "headless")
        self.ev = os.path.join(self.tmp, "events.jsonl")
        self.out = os.path.join(self.tmp, "out.txt")
        self.step = os.path.join(self.tmp, "step_seconds")
        cfg = os.path.join(self.tmp, "config.toml")
        with open(cfg, "w") as f:
            if v["fork"] == "fooocus-api":
                # The user's extra flags: no pip at start (as its README advises for a custom torch);
                # 0.3.x: no git sync of the Fooocus it carries.
                extra = ["--skip-pip"] + (["--sync-repo", "skip"] if v["standin"] else [])
                f.write("[launch]\nextra_args = %s\n" % json.dumps(extra))
        open(self.ev, "w").close()
        with open(self.step, "w") as f:
            f.write(SLOW_STEP_S)
        os.makedirs(os.path.join(self.tmp, "t"))
        env = dict(
            os.environ,
            PYTHONPATH=os.path.join(HERE, "standins"),
            FOOOCUS_STANDIN_STEP_FILE=self.step,
            # launch.py's own override of its requirements file: an empty one, so it runs no pip
            # (an empty file: 2.0.x's check treats a comment line as unmet).
            REQS_FILE=os.path.join(HERE, "no-requirements.txt"),
            GRADIO_ANALYTICS_ENABLED="False",  # no traffic but loopback
            BROWSER="true",  # versions that always open a browser (2.0, 2.1 before 2.1.826, MRE) open none
            TMPDIR=os.path.join(self.tmp, "t"),  # 2.4+ empties $TMPDIR/fooocus at start
            FOOOCUS_GUARD_DATA_DIR=os.path.join(self.tmp, "data"),
            **comfy,
        )
        self.port = free_port()
        self.guard = subprocess.Popen(
            [cli, "run", "--install", self.tree, "--port", str(self.port), "--timeout", "8s", "--grace", "10s",
             "--config", cfg, "--events", self.ev],
            env=env, stdout=open(self.out, "w"), stderr=subprocess.STDOUT)

    def wait(self, pred, timeout, what):
        end = time.time() + timeout
        while time.time() < end:
            for e in events(self.ev):
                if pred(e):
                    return e
            if self.guard.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("%s: not seen within %ds; events: %s\n--- guard and Fooocus output (tail):\n%s" % (
            what, timeout, [e["event"] for e in events(self.ev)], self.output()[-2500:]))

    def output(self):
        with open(self.out, errors="replace") as f:
            return f.read()

    def close(self):
        if self.guard.poll() is None:
            self.guard.send_signal(signal.SIGTERM)
            try:
                self.guard.wait(60)
            except subprocess.TimeoutExpired:
                self.guard.kill()
        if os.environ.get("UPSTREAM_KEEP"):
            print("     kept", self.tmp)
        else:
            trees.remove(self.tmp)


def one(cli, v, check):
    r = Run(cli, v)
    name = v["name"]
    try:
        t0 = time.time()
        ready = r.wait(lambda e: e["event"] == "ready", 240, "ready")
        url = ready["url"]
        check(name, "ready at %s in %.1f s" % (url, time.time() - t0), True)
        page = ui_driver.Page(url, "a lighthouse at dusk") if v["gradio"] else ApiClient(url, "a lighthouse at dusk")
        page.generate()
        try:
            r.wait(lambda e: e["event"] == "generation_started", 60, "generation_started")
        except AssertionError as e:
            raise AssertionError("%s\n--- the page's calls: %s" % (e, page.errors))
        breach = r.wait(lambda e: e["event"] == "limit_breached", 60, "limit_breached")
        check(name, "the 8 s timeout is breached during the generation", breach["limit"] == "timeout", breach)
        stopped = r.wait(lambda e: e["event"] == "generation_stopped", 60, "generation_stopped")
        graceful = stopped["how"] == "graceful"
        check(name, "stopped gracefully through the version's own Stop (%s)" % v["stop"], graceful, stopped)
        if graceful:
            r.wait(lambda e: e["event"] == "generation_finished", 60, "generation_finished after the stop")
            check(name, "Fooocus's own worker printed `User stopped`", "User stopped" in r.output())
        else:
            r.wait(lambda e: e["event"] == "ready" and sum(1 for x in events(r.ev) if x["event"] == "ready") >= 2,
                   240, "ready again after the kill")
            url = [e for e in events(r.ev) if e["event"] == "ready"][-1]["url"]
        with open(r.step, "w") as f:
            f.write(FAST_STEP_S)
        last = stopped.get("generation_id") or 0
        page2 = ui_driver.Page(url, "a lighthouse at dawn") if v["gradio"] else ApiClient(url, "a lighthouse at dawn")
        page2.generate().join(120)
        # Its end: a phantom generation (0 images, closed by the real start) is checked below.
        fin = r.wait(lambda e: e["event"] == "generation_finished" and (e["generation_id"] or 0) > last
                     and (e["images_done"] >= 1 or e["closed_by"] != "next_task"), 60, "the next generation's end")
        check(name, "the next generation completes", fin["outcome"] == "completed" and fin["images_done"] >= 1, fin)
        if v["gradio"]:  # Total time is printed by webui.py; Fooocus-API has none
            check(name, "Fooocus printed its own `Total time` for it", r.output().count("Total time:") >= (2 if graceful else 1))
        starts = [e for e in events(r.ev) if e["event"] == "generation_started"]
        check(name, "two clicks on Generate are two generations (no phantom ones)", len(starts) == 2,
              [(e["event"], e.get("generation_id"), e.get("outcome"), e.get("seconds"), e.get("closed_by"))
               for e in events(r.ev) if e["event"].startswith("generation_")])
    except Exception as e:  # noqa: BLE001 -- any failure of the run is this version's failure
        check(name, "run under the guard", False, str(e) if isinstance(e, AssertionError) else repr(e))
    finally:
        if os.environ.get("UPSTREAM_SHOW_EVENTS"):
            for e in events(r.ev):
                print("     ", json.dumps(e)[:300])
        r.close()


def main():
    cli = os.path.abspath(sys.argv[1])
    only = set(sys.argv[2:])
    results = {"passed": 0, "failed": 0, "xfail": 0}
    lock = threading.Lock()

    def check(version, what, ok, detail=""):
        with lock:
            _check(version, what, ok, detail)

    def _check(version, what, ok, detail=""):
        why = EXPECTED_FAIL.get((version, what))
        tag = ("XPASS" if why else "ok") if ok else ("xfail" if why else "FAIL")
        results[{"ok": "passed", "xfail": "xfail"}.get(tag, "failed")] += 1
        if tag == "XPASS":
            detail = "now passes: remove it from matrix.EXPECTED_FAIL"
        elif tag == "xfail":
            detail = "expected: %s\n     %s" % (why, detail)
        print("%-5s %-16s %s%s" % (tag, version, what, "" if tag == "ok" else "\n      %s" % (detail,)), flush=True)

    def run(v):
        t = time.time()
        one(cli, v, check)
        print("     %-16s %.1f s" % (v["name"], time.time() - t), flush=True)

    todo = [v for v in VERSIONS if not only or v["name"] in only or v["archive"] in only]
    # Two at a time: each run mostly waits on its stand-in steps (lines name their version).
    with ThreadPoolExecutor(max_workers=int(os.environ.get("UPSTREAM_JOBS", "2"))) as pool:
        list(pool.map(run, todo))
    print("%d passed, %d expected to fail, %d failed" % (results["passed"], results["xfail"], results["failed"]))
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
