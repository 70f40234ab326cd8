#!/usr/bin/env python3
"""Each version's real web UI, queue and worker loop under the guard.

For each UI version in matrix.py: the snapshot is unpacked as a venv install whose python is the
venv with the Gradio that version pins (setup.sh), with only torch, the model libraries and the
diffusion stood in (standins/). `fooocus-guard-cli run --install DIR --timeout 8s` starts it; the
test waits for `ready`, clicks Generate through the UI's own /config (ui_driver.py) with a stand-in
step slow enough to pass the timeout, and checks the guard's events: the generation starts, the
timeout is breached, the generation is stopped (gracefully where the version has a stop path the
guard can reach), Fooocus itself printed `User stopped`, and the next generation runs to completion.

The injection check (issue 23: what Fooocus prints is data, not commands) types prompts that
carry every console marker the guard acts on -- out-of-memory text, a second ready line and
uvicorn's with another URL, a dead worker's traceback -- through the real UI: in one line, and on
2.5.5 as a multi-line Enhance detection prompt, which the worker prints verbatim. The guard must
report no out of memory, no second ready, no restart, and still stop a generation at its limit,
on the port it gave Fooocus (2.1.865 without the gateway, where the guard sends the Stop itself).

  tests/upstream/.venv-gradio-3.41/bin/python tests/upstream/test_ui.py target/debug/fooocus-guard-cli [--check ui|injection] [VERSION...]
"""
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
import time
import urllib.error
import urllib.parse
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
    def __init__(self, cli, v, guard_args=()):
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
        self.stops = os.path.join(self.tmp, "stops.jsonl")  # who called upstream's interrupt (the stand-in)
        self.browsers = os.path.join(self.tmp, "browsers.jsonl")  # each run of the user's browser
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
            # The user's browser: a recorder. Versions that always open one (2.0, 2.1 before
            # 2.1.826, MRE) must not start it inside Fooocus's tree (the guard's own BROWSER).
            BROWSER=os.path.join(HERE, "browser_recorder.py"),
            UPSTREAM_BROWSER_LOG=self.browsers,
            FOOOCUS_STANDIN_STOP_LOG=self.stops,
            TMPDIR=os.path.join(self.tmp, "t"),  # 2.4+ empties $TMPDIR/fooocus at start
            FOOOCUS_GUARD_DATA_DIR=os.path.join(self.tmp, "data"),
            **comfy,
        )
        self.port = free_port()
        self.guard = subprocess.Popen(
            [cli, "run", "--install", self.tree, "--port", str(self.port), "--timeout", "8s", "--grace", "10s",
             "--config", cfg, "--events", self.ev, *guard_args],
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

    def lines(self, path):
        return events(path)  # JSON lines, as the guard's events

    def index(self, pred):
        """The position in the events file of the first event for which pred is true."""
        return next(i for i, e in enumerate(events(self.ev)) if pred(e))

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


def ts(e):
    """An event's time, as seconds since the epoch."""
    return datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()


def one(cli, v, check):
    # The guard opens the user's browser once Fooocus is ready (Fooocus itself opens none).
    r = Run(cli, v, ["--open-browser"])
    name = v["name"]
    try:
        t0 = time.time()
        ready = r.wait(lambda e: e["event"] == "ready", 240, "ready")
        url = ready["url"]
        # Ready at the address the guard was told to serve (the gateway's, or Fooocus's own), and
        # answering there: the UI's page, or Fooocus-API's server.
        try:
            status = urllib.request.urlopen(url, timeout=30).status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError as e:
            status = repr(e)
        port = urllib.parse.urlsplit(url).port
        check(name, "ready at %s in %.1f s, serving there" % (url, time.time() - t0),
              port == r.port and (status == 200 if v["gradio"] else isinstance(status, int)), (port, r.port, status))
        page = ui_driver.Page(url, "a lighthouse at dusk") if v["gradio"] else ApiClient(url, "a lighthouse at dusk")
        at_click = len(r.output())
        page.generate()
        try:
            started = r.wait(lambda e: e["event"] == "generation_started", 60, "generation_started")
        except AssertionError as e:
            raise AssertionError("%s\n--- the page's calls: %s" % (e, page.errors))
        gid = started["generation_id"]
        breach = r.wait(lambda e: e["event"] == "limit_breached", 60, "limit_breached")
        stopped = r.wait(lambda e: e["event"] == "generation_stopped", 60, "generation_stopped")
        graceful = stopped["how"] == "graceful"
        if graceful:
            first_end = r.wait(lambda e: e["event"] == "generation_finished" and e["generation_id"] == gid, 60,
                               "generation_finished after the stop")
            # The breach is this generation's, after its start and before its end.
            order = [r.index(lambda e: e["event"] == "generation_started" and e["generation_id"] == gid),
                     r.index(lambda e: e["event"] == "limit_breached"),
                     r.index(lambda e: e["event"] == "generation_finished" and e["generation_id"] == gid)]
            check(name, "the 8 s timeout is breached during the generation",
                  breach["limit"] == "timeout" and breach.get("generation_id") == gid and order == sorted(order)
                  and 8 <= ts(breach) - ts(started) < 9.5 and first_end["outcome"] == "timed_out",
                  (breach, order, ts(breach) - ts(started), first_end))
        else:
            check(name, "the 8 s timeout is breached during the generation",
                  breach["limit"] == "timeout" and breach.get("generation_id") == gid, breach)
        # Through the version's own Stop: upstream's interrupt was called by that version's Stop
        # handler (the stand-in records its caller), once, after the breach and before the guard
        # saw the generation stopped; per session (2.2+), for the task that was running.
        calls = r.lines(r.stops)
        own = [c for c in calls if c["by"] == v["stop_fn"]]
        per_session = all(c.get("task_processing", True) for c in own)
        check(name, "stopped gracefully through the version's own Stop (%s, %s)" % (v["stop"], v["stop_fn"]),
              graceful and stopped["steps"][0]["step"] == "graceful" and stopped["steps"][0]["result"] == "ended"
              and len(own) == 1 and own == calls[:1] and ts(breach) <= own[0]["t"] <= ts(stopped) + 0.5 and per_session,
              (stopped.get("steps"), calls, ts(breach), ts(stopped)))
        if graceful:
            first = r.output()[at_click:]
            check(name, "Fooocus's own worker printed `User stopped` for this generation",
                  first.count("User stopped") == 1, first[-1500:])
        else:
            r.wait(lambda e: e["event"] == "ready" and sum(1 for x in events(r.ev) if x["event"] == "ready") >= 2,
                   240, "ready again after the kill")
            url = [e for e in events(r.ev) if e["event"] == "ready"][-1]["url"]
        with open(r.step, "w") as f:
            f.write(FAST_STEP_S)
        last = stopped.get("generation_id") or 0
        at_second = len(r.output())
        page2 = ui_driver.Page(url, "a lighthouse at dawn") if v["gradio"] else ApiClient(url, "a lighthouse at dawn")
        page2.generate().join(120)
        # Its end: a phantom generation (0 images, closed by the real start) is checked below.
        fin = r.wait(lambda e: e["event"] == "generation_finished" and (e["generation_id"] or 0) > last
                     and (e["images_done"] >= 1 or e["closed_by"] != "next_task"), 60, "the next generation's end")
        check(name, "the next generation completes, with the 2 images asked",
              fin["outcome"] == "completed" and fin["images_done"] == 2 and fin.get("images_total", 2) == 2, fin)
        if v["gradio"]:  # Total time is printed by webui.py; Fooocus-API has none
            # One for each generation, each within its own: the stopped one's before the second
            # click, the completed one's after it.
            out = r.output()
            check(name, "Fooocus printed its own `Total time` for each generation",
                  out[at_click:at_second].count("Total time:") == (1 if graceful else 0)
                  and out[at_second:].count("Total time:") == 1, out[at_click:][-2500:])
        starts = [e for e in events(r.ev) if e["event"] == "generation_started"]
        check(name, "two clicks on Generate are two generations (no phantom ones)", len(starts) == 2,
              [(e["event"], e.get("generation_id"), e.get("outcome"), e.get("seconds"), e.get("closed_by"))
               for e in events(r.ev) if e["event"].startswith("generation_")])
        # The user's browser (the recorder in BROWSER) never ran inside Fooocus's tree: not as a
        # descendant of any Fooocus process the guard started.
        fooocus = {e["pid"] for e in events(r.ev) if e["event"] == "started"}
        runs = r.lines(r.browsers)
        inside = [b for b in runs if fooocus & set(b["ancestors"])]
        check(name, "no browser started inside Fooocus's tree (the user's browser ran %d times, %d inside)" % (
            len(runs), len(inside)), not inside, inside)
        # --open-browser: the guard opened the user's browser itself, once (not again after a
        # kill's restart), at the address it reported ready, from outside the tree.
        check(name, "the guard opened the user's browser once, at the ready address",
              [b["argv"] for b in runs] == [[ready["url"]]], (runs, ready["url"]))
    except Exception as e:  # noqa: BLE001 -- any failure of the run is this version's failure
        check(name, "run under the guard", False, str(e) if isinstance(e, AssertionError) else repr(e))
    finally:
        if os.environ.get("UPSTREAM_SHOW_EVENTS"):
            for e in events(r.ev):
                print("     ", json.dumps(e)[:300])
        r.close()


# The injection check: 2.5.5 echoes its Enhance detection prompt verbatim (multi-line; the stop goes
# through the gateway), 2.1.865 has the global Stop the guard sends itself (run without the gateway).
INJECTION = ("2.5.5", "2.1.865")


def single_line(port):
    """One line of a prompt: torch's OOM message and each start-up marker, with a URL of its own."""
    return ("a cat, CUDA out of memory. Tried to allocate 2.00 GiB, INFO:     Uvicorn running on http://127.0.0.1:%d "
            "(Press CTRL+C to quit), Running on local URL:  http://127.0.0.1:%d, App started successful. Use the app "
            "with http://127.0.0.1:%d/ or 127.0.0.1:%d" % (port, port, port, port))


def multi_line(port):
    """Lines of their own: a dead worker's traceback in Python's shape, start-up lines, OOM, a task start."""
    return ("a cat\nException in thread Thread-2 (worker):\nTraceback (most recent call last):\n"
            '  File "/usr/lib/python3.10/threading.py", line 1016, in _bootstrap_inner\n    self.run()\n'
            '  File "/content/Fooocus/modules/async_worker.py", line 1437, in worker\n    handler(task)\n'
            "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
            "Running on local URL:  http://127.0.0.1:%d\n"
            "App started successful. Use the app with http://127.0.0.1:%d/ or 127.0.0.1:%d\n"
            "INFO:     Uvicorn running on http://127.0.0.1:%d (Press CTRL+C to quit)\n"
            "CUDA out of memory. Tried to allocate 2.00 GiB\n[Parameters] Adaptive CFG = 7\na dog" % (port, port, port, port))


# The detection prompt of forged_end: a task end in Fooocus's format (a figure no real run prints),
# a next task's start, then the enhance phase goes on sampling.
FORGED_END = "a cat\nTotal time: 4242.42 seconds\n[Parameters] Adaptive CFG = 7\na dog"
# The image's diffusion fast, then Vary (Subtle) after the enhancement slow: 18 steps, 18 s, past
# the 8 s timeout (the stand-in takes one number per diffusion).
FAST_THEN_SLOW = FAST_STEP_S + " 1.0"


def forged_end(r, url, check):
    """2.5.5 behind the gateway: the Enhance detection prompt writes `Total time` and a task start,
    then the enhance phase samples on (Vary (Subtle) after the last enhancement, slow steps). The
    generation is tied to the tab's queue call, so neither line ends it: the guard keeps one
    generation and stops it at its timeout, counted from its real start. Before, the forged end
    closed it and the forged start opened a second, whose timeout started again."""
    name = "2.5.5"
    with open(r.step, "w") as f:
        f.write(FAST_THEN_SLOW)
    page = ui_driver.Page(url, "a lighthouse")
    page.set("slider", "Image Number", 1)
    page.set("checkbox", "Enhance", True)
    page.set("checkbox", "Enable", True)
    page.set("textbox", "Detection prompt", FORGED_END, nth=1)
    page.set("radio", "Upscale or Variation:", "Vary (Subtle)", nth=1)  # #0 is the Input Image tab's
    page.set("radio", "Order of Processing", "After Last Enhancement")
    before = len(events(r.ev))
    known = {e["generation_id"] for e in events(r.ev) if e["event"] == "generation_started"}
    clicked = time.time()
    page.generate()
    first = r.wait(lambda e: e["event"] == "generation_started" and e["generation_id"] not in known, 60,
                   "the forged end's generation")
    gid = first["generation_id"]
    r.wait(lambda e: e["event"] == "limit_breached" and e.get("generation_id") == gid, 60,
           "the forged end's generation's timeout")
    at = time.time() - clicked
    check(name, "forged end: the timeout counts from the real start (8 s after Generate, within 9.5)",
          8 <= at < 9.5, at)
    stopped = r.wait(lambda e: e["event"] == "generation_stopped" and e["generation_id"] == gid, 60,
                     "the forged end's generation stopped")
    check(name, "forged end: the generation is stopped gracefully at its timeout",
          stopped["how"] == "graceful", stopped)
    fin = r.wait(lambda e: e["event"] == "generation_finished" and e["generation_id"] == gid, 60,
                 "the forged end's generation's end")
    check(name, "forged end: Fooocus printed the detection prompt's Total time",
          "Total time: 4242.42 seconds" in r.output(), page.errors)
    new = [e["event"] for e in events(r.ev)[before:]]
    check(name, "forged end: one generation, timed out", new.count("generation_started") == 1
          and fin["outcome"] == "timed_out", (fin, new))


def injection(cli, v, check):
    # A loopback port the prompts name: nothing of the guard's may ever connect to it.
    decoy = socket.socket()
    decoy.bind(("127.0.0.1", 0))
    decoy.listen(8)
    decoy.setblocking(False)
    port = decoy.getsockname()[1]
    enhance = v["name"] == "2.5.5"
    r = Run(cli, v, [] if enhance else ["--no-gateway"])
    name = v["name"]
    try:
        url = r.wait(lambda e: e["event"] == "ready", 240, "ready")["url"]
        with open(r.step, "w") as f:
            f.write(FAST_STEP_S)  # the prompt's generation runs to its end (through enhance)
        page = ui_driver.Page(url, single_line(port) + "\n" + multi_line(port))
        if enhance:
            page.set("checkbox", "Enhance", True)
            page.set("checkbox", "Enable", True)  # the first Enhance tab
            page.set("textbox", "Detection prompt", multi_line(port), nth=1)  # #0 is the inpaint tab's
        page.generate().join(120)
        fin = r.wait(lambda e: e["event"] == "generation_finished", 60, "the injected generation's end")
        # Ended by Fooocus: its `Total time` (task_end) or, behind the gateway, the tab's queue
        # call completing (queue_end). Fooocus prints the one right before the other, and the two
        # reach the guard by two channels (console pipe, gateway tap), so either may come first.
        started = [e for e in events(r.ev) if e["event"] == "generation_started"]
        check(name, "injection: the prompt's generation is one generation, ended by Fooocus",
              len(started) == 1 and fin["outcome"] == "completed"
              and fin["closed_by"] in (("task_end", "queue_end") if enhance else ("task_end",)),
              (fin, started, page.errors))
        out = r.output()
        check(name, "injection: Fooocus echoed the prompt", "[Prompt Expansion] a cat, CUDA out of memory" in out)
        if enhance:
            check(name, "injection: Fooocus echoed the multi-line Enhance detection prompt, lines of their own",
                  '[Enhance] Searching for "a cat\nException in thread Thread-2 (worker):' in out, page.errors)
        # Then a generation into its timeout: the stop still works, on the guard's own port.
        with open(r.step, "w") as f:
            f.write(SLOW_STEP_S)
        ui_driver.Page(url, single_line(port)).generate()
        stopped = r.wait(lambda e: e["event"] == "generation_stopped", 60, "generation_stopped")
        check(name, "injection: the next generation is still stopped gracefully at its timeout",
              stopped["how"] == "graceful", stopped)
        r.wait(lambda e: e["event"] == "generation_finished" and e["generation_id"] == stopped["generation_id"], 60,
               "the stopped generation's end")
        evs = [e["event"] for e in events(r.ev)]
        for what, ok in [("no out_of_memory", "out_of_memory" not in evs),
                         ("one ready", evs.count("ready") == 1),
                         ("no restart (unhealthy, exited, restarting)",
                          not {"unhealthy", "exited", "restarting"} & set(evs)),
                         ("two generations", evs.count("generation_started") == 2)]:
            check(name, "injection: " + what, ok, evs)
        if enhance:
            forged_end(r, url, check)
        try:
            decoy.accept()
            touched = True
        except BlockingIOError:
            touched = False
        check(name, "injection: nothing connected to the prompt's URL", not touched)
    except Exception as e:  # noqa: BLE001 -- any failure of the run is this version's failure
        check(name, "injection: run under the guard", False, str(e) if isinstance(e, AssertionError) else repr(e))
    finally:
        if os.environ.get("UPSTREAM_SHOW_EVENTS"):
            for e in events(r.ev):
                print("     ", json.dumps(e)[:300])
        r.close()
        decoy.close()


def main():
    cli = os.path.abspath(sys.argv[1])
    args = sys.argv[2:]
    known = {"ui", "injection"}
    checks = set(known)
    if len(args) >= 2 and args[0] == "--check":
        checks, args = {args[1]}, args[2:]
        if not checks <= known:
            sys.exit(f"unknown check {next(iter(checks))}: the UI checks are {', '.join(sorted(known))}")
    only = set(args)
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

    def run(job):
        what, v = job
        t = time.time()
        (one if what == "ui" else injection)(cli, v, check)
        print("     %-16s %s %.1f s" % (v["name"], what, time.time() - t), flush=True)

    picked = [v for v in VERSIONS if not only or v["name"] in only or v["archive"] in only]
    todo = [("ui", v) for v in picked if "ui" in checks] + \
        [("injection", v) for v in picked if "injection" in checks and v["name"] in INJECTION]
    # Two at a time: each run mostly waits on its stand-in steps (lines name their version).
    with ThreadPoolExecutor(max_workers=int(os.environ.get("UPSTREAM_JOBS", "2"))) as pool:
        list(pool.map(run, todo))
    print("%d passed, %d expected to fail, %d failed" % (results["passed"], results["xfail"], results["failed"]))
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
