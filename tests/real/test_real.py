#!/usr/bin/env python3
"""Real Fooocus 2.5.5 under the guard: real torch 2.1.0 on CPU, the real pipeline, a checkpoint of
Fooocus's own classes with random weights (setup.sh, make_models.py; tests/real/README.md).

Each scenario starts `fooocus-guard-cli run --install TREE --python VENV --vram-mode always-cpu`
on a fresh copy of the cached 2.5.5 tree, clicks Generate through the real UI (tests/upstream's
ui_driver, which runs the Generate button's own click chain from /config), and checks the guard's
JSON events against what Fooocus itself printed (the guard's stdout carries Fooocus's console; each
line is timestamped here as it arrives).

  A  ready: Fooocus starts, loads the checkpoint (a model_load phase event before `ready`),
     nothing is downloaded.
  B  a timeout that lands in the middle of sampling: the guard stops the generation gracefully
     (Fooocus's own `User stopped`, the same pid goes on), and the next generation completes
     without loading the model again; time to first step of both.
  C  a timeout that lands in preparation (prompt expansion and encoding, before the first step,
     where Fooocus does not look at Stop): still graceful, the breach and the stop name the phase
     "preparation", and Fooocus goes on.
  M  a RAM cap below what loading needs: out of memory during the model load, reported as such.

  python3 tests/real/test_real.py [CLI] [--check A|B|C|M ...]    (CLI: target/debug/fooocus-guard-cli)

Run it with the real venv's python (it has gradio_client; it re-executes itself with it
otherwise). Environment: FG_REAL_CACHE (setup.sh's cache), FG_REAL_KEEP=1 keeps each run's
folder, FG_REAL_SHOW=1 prints each run's events, FG_REAL_B_TIMEOUT (seconds, default 150).
"""
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
CACHE = os.environ.get("FG_REAL_CACHE") or os.path.expanduser("~/.cache/fooocus-guard/real")
VENV_PY = os.path.join(CACHE, "venv", "bin", "python")
TREE = os.path.join(CACHE, "fooocus-2.5.5")
MODELS = os.path.join(CACHE, "models")
CHECKPOINT = "fg-vega-random.safetensors"

try:
    import gradio_client  # noqa: F401 -- ui_driver's; the real venv has it
except ImportError:
    if os.path.exists(VENV_PY) and os.path.realpath(sys.executable) != os.path.realpath(VENV_PY):
        os.execv(VENV_PY, [VENV_PY] + sys.argv)
    sys.exit("test_real: no gradio_client: run tests/real/setup.sh, then this script with %s" % VENV_PY)

sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(TESTS, "upstream"))
from testkit import Tally, alive, events, free_port  # noqa: E402
import trees  # noqa: E402  (tests/upstream: the snapshot's placeholders)
import ui_driver  # noqa: E402  (tests/upstream: the Generate button's own click chain)

STEP_LINE = re.compile(r"(\d+)/(\d+) \[")  # tqdm: ` 35%|###5      | 7/20 [00:17<00:31,  2.46s/it]`
B_TIMEOUT = float(os.environ.get("FG_REAL_B_TIMEOUT", "150"))
B_STEPS = 200  # gen 1 of B: far more than fits in its timeout (the UI's maximum)
B1_SIZE = "512*512"  # gen 1 of B: 0.3 s a step at 256x256 on a quiet machine would end 200 steps in time
B2_STEPS = 3  # gen 2 of B: runs to its end
C_TIMEOUT = 5  # C: Fooocus is still expanding and encoding the prompt 5 s after Generate
READY_S = 600  # start-up budget on a loaded 2-core machine (21-38 s measured when quiet)

FIGURES = []  # (scenario, what, value) for the table at the end


def figure(scenario, what, value):
    FIGURES.append((scenario, what, value))


def ts(e):
    return datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()


# What Fooocus and the guard extra need in a folder of their own: the launch flags that keep
# Fooocus from downloading anything (the guard's `[launch] extra_args`).
EXTRA_ARGS = ["--disable-preset-download", "--disable-analytics"]


def place_tree(tmp, steps=30):
    """A fresh copy of the cached 2.5.5 tree in `tmp`/Fooocus, configured for the generated
    models; returns (tree, the environment Fooocus runs with). Also used by
    tests/app/real_screenshots.sh."""
    tree = os.path.join(tmp, "Fooocus")
    shutil.copytree(TREE, tree, ignore=shutil.ignore_patterns(".fg-stamp"))
    trees.placeholders(tree)  # the UI reads sdxl_styles/samples/fooocus_v2.jpg's mtime
    os.makedirs(os.path.join(tmp, "t"))
    # Fooocus's own config.txt: the generated models (where it looks for them), 256x256, one
    # image, the UI's step count, no LoRA (the default preset's offset LoRA would be a download).
    config = {
        "path_checkpoints": [os.path.join(MODELS, "checkpoints")],
        "path_vae_approx": os.path.join(MODELS, "vae_approx"),
        "path_fooocus_expansion": os.path.join(MODELS, "prompt_expansion", "fooocus_expansion"),
        "path_outputs": os.path.join(tmp, "outputs"),
        "temp_path": os.path.join(tmp, "t", "fooocus"),
        "default_model": CHECKPOINT,
        "default_refiner": "None",
        "default_loras": [[True, "None", 1.0]] * 5,
        "available_aspect_ratios": ["256*256", "512*512"],
        "default_aspect_ratio": "256*256",
        "default_image_number": 1,
        "default_performance": "Speed",
        "default_overwrite_step": steps,
        "checkpoint_downloads": {}, "lora_downloads": {}, "embeddings_downloads": {}, "vae_downloads": {},
        "previous_default_models": [],
    }
    with open(os.path.join(tree, "config.txt"), "w") as f:
        json.dump(config, f, indent=2)
    reqs = os.path.join(tmp, "no-requirements.txt")
    open(reqs, "w").close()
    env = dict(
        os.environ,
        REQS_FILE=reqs,  # launch.py's own override of its requirements: none, so no pip at start
        GRADIO_ANALYTICS_ENABLED="False",
        TMPDIR=os.path.join(tmp, "t"),
    )
    return tree, env


class Run:
    """One `fooocus-guard-cli run` of a fresh copy of the cached 2.5.5 tree."""

    def __init__(self, cli, name, guard_args, steps=30):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="fg-real-%s-" % name)
        self.tree, env = place_tree(self.tmp, steps)
        env["FOOOCUS_GUARD_DATA_DIR"] = os.path.join(self.tmp, "data")
        gcfg = os.path.join(self.tmp, "guard.toml")
        with open(gcfg, "w") as f:
            f.write("[launch]\nextra_args = %s\n" % json.dumps(EXTRA_ARGS))
        self.ev = os.path.join(self.tmp, "events.jsonl")
        open(self.ev, "w").close()
        self.out_path = os.path.join(self.tmp, "out.txt")
        self.port = free_port()
        self.lines = []  # (arrival time, line) of the guard's stdout: its own lines and Fooocus's console
        self.lock = threading.Lock()
        self.t0 = time.time()
        self.guard = subprocess.Popen(
            [cli, "run", "--install", self.tree, "--python", VENV_PY, "--vram-mode", "always-cpu",
             "--port", str(self.port), "--config", gcfg, "--events", self.ev, *guard_args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        """Each line's time is when its first byte arrived: tqdm writes `\r` and then the bar, so
        a bar's line is only complete when the next update's `\r` comes, a step later."""
        buf, buf_t = b"", None
        with open(self.out_path, "wb") as out:
            while True:
                chunk = self.guard.stdout.read1(65536)
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
                now = time.time()
                parts = re.split(rb"[\r\n]", buf + chunk)
                tail = parts.pop()
                done = [((buf_t if i == 0 and buf_t is not None else now), p) for i, p in enumerate(parts)]
                buf_t = (buf_t if not parts and buf_t is not None else now) if tail else None
                buf = tail
                with self.lock:
                    self.lines.extend((t, p.decode("utf-8", "replace")) for t, p in done if p.strip())
        if buf.strip():
            with self.lock:
                self.lines.append((buf_t or time.time(), buf.decode("utf-8", "replace")))

    # --- what the guard wrote, what Fooocus printed ---------------------------------------------
    def events(self):
        return events(self.ev)

    def wait(self, pred, timeout, what):
        end = time.time() + timeout
        while time.time() < end:
            for e in self.events():
                if pred(e):
                    return e
            if self.guard.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("%s: not seen within %ds; events: %s\n--- console (tail):\n%s" % (
            what, timeout, [e["event"] + ("/" + e["phase"] if "phase" in e else "") for e in self.events()],
            self.tail()))

    def console(self, since=0.0, until=None):
        with self.lock:
            return [(t, l) for t, l in self.lines if t >= since and (until is None or t <= until)]

    def first(self, needle, since=0.0, regex=False):
        """Arrival time and text of the first console line after `since` holding `needle`."""
        for t, l in self.console(since):
            if (re.search(needle, l) if regex else needle in l):
                return t, l
        return None

    def count(self, needle, since=0.0, until=None):
        return sum(1 for _, l in self.console(since, until) if needle in l)

    def wait_line(self, needle, timeout, since=0.0, regex=False):
        end = time.time() + timeout
        while time.time() < end:
            hit = self.first(needle, since, regex)
            if hit:
                return hit
            if self.guard.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError("console line %r: not seen within %ds\n--- console (tail):\n%s" % (needle, timeout, self.tail()))

    def steps(self, since=0.0, until=None):
        """(arrival time, step, total) of each sampling step line (tqdm prints k/N once a step)."""
        out, seen = [], set()
        for t, l in self.console(since, until):
            m = STEP_LINE.search(l)
            if m and (int(m.group(1)), int(m.group(2))) not in seen:
                k, n = int(m.group(1)), int(m.group(2))
                if n < 1000:  # a download bar (bytes) is no sampling step
                    seen.add((k, n))
                    out.append((t, k, n))
        return out

    def tail(self, n=40):
        return "\n".join(l for _, l in self.console()[-n:])

    def show(self):
        if os.environ.get("FG_REAL_SHOW"):
            for e in self.events():
                print("      ", json.dumps(e)[:400])

    def close(self):
        if self.guard.poll() is None:
            self.guard.send_signal(signal.SIGTERM)
            try:
                self.guard.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.guard.pid, signal.SIGKILL)
                self.guard.wait(10)
        self.reader.join(10)
        if os.environ.get("FG_REAL_KEEP"):
            print("      kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def step_time(steps):
    """Median seconds per step from consecutive step lines (their arrival times)."""
    gaps = [b[0] - a[0] for a, b in zip(steps, steps[1:]) if b[1] == a[1] + 1]
    return statistics.median(gaps) if gaps else None


def fmt(v):
    return "-" if v is None else ("%.1f s" % v if isinstance(v, float) else str(v))


# --- A: ready ---------------------------------------------------------------------------------------
def ready(r, t, scenario):
    """Waits for ready; checks the model load was seen as such. Returns the ready event."""
    rd = r.wait(lambda e: e["event"] == "ready", READY_S, "ready")
    evs = r.events()
    started = [e for e in evs if e["event"] == "started"]
    loads = [e for e in evs if e["event"] == "phase" and e.get("phase") == "model_load"]
    base = r.first("Base model loaded:")
    app = r.first("App started successful")
    figure(scenario, "ready (guard's startup_s)", rd.get("startup_s"))
    if base:
        figure(scenario, "model load: start to `Base model loaded`", base[0] - r.t0)
    t.check("%s: Fooocus started under the guard (one `started`, pid %s)" % (scenario, started[0]["pid"] if started else "?"),
            len(started) == 1, [e["event"] for e in evs])
    t.check("%s: Fooocus printed its ready line and the guard reported ready at its port" % scenario,
            app is not None and str(r.port) in rd.get("url", ""), (rd, app))
    t.check("%s: Fooocus loaded the generated checkpoint (`Base model loaded: ...%s`)" % (scenario, CHECKPOINT),
            base is not None and CHECKPOINT in base[1], r.tail())
    t.check("%s: a model_load phase event, without a generation, before ready" % scenario,
            len(loads) >= 1 and "generation_id" not in loads[0] and ts(loads[0]) <= ts(rd), loads)
    try:
        status = urllib.request.urlopen(rd["url"], timeout=60).status
    except Exception as e:  # noqa: BLE001
        status = repr(e)
    t.check("%s: the UI answers at the ready address" % scenario, status == 200, status)
    return rd


def no_downloads(r, t, scenario):
    hits = [l for _, l in r.console() if "Downloading" in l and "Downloading:" in l]
    t.check("%s: nothing was downloaded (no `Downloading:` from Fooocus)" % scenario, not hits, hits)


def scenario_a(cli, t):
    r = Run(cli, "A", ["--timeout", "0", "--startup-timeout", "%ds" % READY_S])
    try:
        ready(r, t, "A")
        no_downloads(r, t, "A")
        rss = peak_rss(r)
        if rss:
            figure("A", "RSS of the tree when ready", "%.1f GiB" % (rss / 2**30))
    except AssertionError as e:
        t.check("A: run", False, str(e))
    finally:
        r.show()
        r.close()


def peak_rss(r):
    """The RSS of Fooocus's python now (the pid the guard started)."""
    st = [e for e in r.events() if e["event"] == "started"]
    if not st:
        return None
    try:
        with open("/proc/%d/status" % st[-1]["pid"]) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None


# --- B: a timeout mid-sampling, then a generation that completes -------------------------------------
def gen_figures(r, scenario, label, gid, clicked, until=None):
    """Time to first step (click to the first `1/N` line, and the guard's own start to its sampling
    phase), Fooocus's own preparation time, the step time."""
    evs = r.events()
    started = next((e for e in evs if e["event"] == "generation_started" and e["generation_id"] == gid), None)
    sampling = next((e for e in evs if e["event"] == "phase" and e.get("generation_id") == gid
                     and e.get("phase") == "sampling"), None)
    steps = [s for s in r.steps(clicked, until) if s[1] >= 1]
    prep = r.first(r"Preparation time: ([\d.]+) seconds", clicked, regex=True)
    out = {
        "first_step": (steps[0][0] - clicked) if steps else None,
        "guard_first_step": (ts(sampling) - ts(started)) if started and sampling else None,
        "prep": float(re.search(r"([\d.]+) seconds", prep[1]).group(1)) if prep and (until is None or prep[0] <= until) else None,
        "step": step_time(steps),
        "steps": steps,
    }
    figure(scenario, "%s: click to first step (console)" % label, out["first_step"])
    figure(scenario, "%s: generation_started to sampling phase (events)" % label, out["guard_first_step"])
    figure(scenario, "%s: Fooocus's `Preparation time`" % label, out["prep"])
    figure(scenario, "%s: one sampling step (median)" % label, out["step"])
    return out


def aspect(page, wh):
    """Picks the aspect ratio `wh` ("512*512") in the UI's radio, as the page would send it."""
    radio = next(c for c in page.cfg["components"] if c["type"] == "radio" and c["props"].get("label") == "Aspect Ratios")
    choices = [c[0] if isinstance(c, (list, tuple)) else c for c in radio["props"]["choices"]]
    w, h = wh.split("*")
    value = next(c for c in choices if c.startswith("%s×%s" % (w, h)) or c.startswith(wh))
    page.set("radio", "Aspect Ratios", value)


def scenario_b(cli, t, also_a):
    r = Run(cli, "B", ["--timeout", "%ds" % B_TIMEOUT, "--grace", "10s", "--startup-timeout", "%ds" % READY_S,
                       "--restart", "never"], steps=B_STEPS)
    try:
        rd = ready(r, t, "A" if also_a else "B")
        if also_a:
            no_downloads(r, t, "A")
        pid = [e for e in r.events() if e["event"] == "started"][0]["pid"]
        # Generation 1: 200 steps at 512x512 (a step 4 times 256x256's), far past the timeout
        # however quiet the machine: 200 steps at 256x256 took 60 s on a quiet one.
        page = ui_driver.Page(rd["url"], "a lighthouse at dusk")
        page.set("slider", "Forced Overwrite of Sampling Step", B_STEPS)
        aspect(page, B1_SIZE)
        clicked = time.time()
        page.generate()
        g1 = r.wait(lambda e: e["event"] == "generation_started", 120, "generation 1 started (%s)" % page.errors)
        gid = g1["generation_id"]
        breach = r.wait(lambda e: e["event"] == "limit_breached", B_TIMEOUT + 120, "the timeout's breach")
        stopped = r.wait(lambda e: e["event"] == "generation_stopped", 300, "generation 1 stopped")
        fin = r.wait(lambda e: e["event"] == "generation_finished" and e["generation_id"] == gid, 300,
                     "generation 1 finished")
        user_stopped = r.first("User stopped", clicked)
        f1 = gen_figures(r, "B", "gen 1", gid, clicked, until=ts(breach))
        steps_before = [s for s in r.steps(clicked) if s[0] <= ts(breach) and s[1] >= 1]
        figure("B", "gen 1: steps done at the breach", steps_before[-1][1] if steps_before else 0)
        figure("B", "stop latency: breach to generation over (took_s)", stopped.get("took_s"))
        if user_stopped:
            figure("B", "stop latency: breach to Fooocus's `User stopped` (console)", user_stopped[0] - ts(breach))
            after = [s for s in r.steps(clicked) if ts(breach) < s[0] <= user_stopped[0]]
            figure("B", "steps Fooocus printed between the breach and `User stopped`", len(after))
            if after:
                figure("B", "  the last of them, after the breach", after[-1][0] - ts(breach))
        figure("B", "grace given (%s)" % stopped.get("grace"), stopped.get("grace_s"))
        t.check("B: the %ds timeout is breached during generation 1, in its sampling phase (Fooocus had printed step %s)" % (
            B_TIMEOUT, steps_before[-1][1] if steps_before else "none"),
            breach["limit"] == "timeout" and breach.get("generation_id") == gid and breach.get("phase") == "sampling"
            and bool(steps_before), breach)
        t.check("B: the guard stopped it gracefully (how graceful, phase sampling, first step graceful/ended)",
                stopped["how"] == "graceful" and stopped.get("phase") == "sampling" and stopped["steps"]
                and stopped["steps"][0]["step"] == "graceful" and stopped["steps"][0]["result"] == "ended", stopped)
        t.check("B: Fooocus itself printed `User stopped` for it, once", r.count("User stopped", clicked) == 1,
                r.tail())
        st = f1["step"] or 0
        t.check("B: stopped within one observed step (took %.1f s; a step %.1f s)" % (stopped.get("took_s", -1), st),
                stopped.get("took_s", 1e9) <= max(2 * st, st + 10), (stopped.get("took_s"), st))
        t.check("B: generation 1 ends timed_out", fin["outcome"] == "timed_out", fin)
        # Generation 2: 3 steps, to its end, in the same process, no model load.
        at2 = time.time()
        page2 = ui_driver.Page(rd["url"], "a lighthouse at dawn")
        page2.set("slider", "Forced Overwrite of Sampling Step", B2_STEPS)
        aspect(page2, "256*256")
        clicked2 = time.time()
        page2.generate()
        fin2 = r.wait(lambda e: e["event"] == "generation_finished" and e["generation_id"] > gid, B_TIMEOUT + 120,
                      "generation 2 finished (%s)" % page2.errors)
        gid2 = fin2["generation_id"]
        f2 = gen_figures(r, "B", "gen 2", gid2, clicked2)
        saving = r.first("Saving image 1/1 to system", clicked2)
        last = [s for s in f2["steps"] if s[1] == s[2]]
        if saving and last:
            figure("B", "gen 2: decode (last step to `Saving image`)", saving[0] - last[0][0])
        done = r.first(r"Generating and saving time: ([\d.]+) seconds", clicked2, regex=True)
        if done:
            figure("B", "gen 2: Fooocus's `Generating and saving time`", float(re.search(r"([\d.]+) seconds", done[1]).group(1)))
        figure("B", "gen 2: click to generation_finished", ts(fin2) - clicked2)
        evs = r.events()
        t.check("B: generation 2 completes with its image", fin2["outcome"] == "completed" and fin2["images_done"] == 1
                and saving is not None, (fin2, page2.errors))
        t.check("B: the same Fooocus went on (pid %d alive, one `started`, no exit or restart)" % pid,
                alive(pid) and [e["event"] for e in evs].count("started") == 1
                and not {"exited", "restarting"} & {e["event"] for e in evs}, [e["event"] for e in evs])
        # No checkpoint read again: Fooocus prints `Base model loaded` (and ldm_patched `model_type`)
        # only when it reads one from disk. Moving the UNet to the compute device (`Loading 1 new
        # model`, each generation with --always-cpu's offload) is a model_load phase for the guard
        # too: counted, not failed.
        moves2 = [e for e in evs if e["event"] == "phase" and e.get("phase") == "model_load" and ts(e) >= at2]
        figure("B", "gen 2: model_load phase events (moves to the device)", len(moves2))
        t.check("B: generation 2 read no checkpoint (no `Base model loaded`, no `model_type` after its click)",
                r.count("Base model loaded", at2) == 0 and r.count("model_type ", at2) == 0,
                [l for _, l in r.console(at2) if "model" in l.lower()])
        if f1["first_step"] and f2["first_step"]:
            t.check("B: time to first step, gen 1 %.1f s vs gen 2 %.1f s (printed; no reload in gen 2)" % (
                f1["first_step"], f2["first_step"]), True)
    except AssertionError as e:
        t.check("B: run", False, str(e))
    finally:
        r.show()
        r.close()


# --- C: a timeout that lands in preparation -----------------------------------------------------------
def scenario_c(cli, t):
    r = Run(cli, "C", ["--timeout", "%ds" % C_TIMEOUT, "--grace", "10s", "--startup-timeout", "%ds" % READY_S,
                       "--restart", "never"], steps=B_STEPS)
    try:
        rd = ready(r, t, "C")
        pid = [e for e in r.events() if e["event"] == "started"][0]["pid"]
        page = ui_driver.Page(rd["url"], "a lighthouse at dusk")
        clicked = time.time()
        page.generate()
        g = r.wait(lambda e: e["event"] == "generation_started", 120, "generation started (%s)" % page.errors)
        gid = g["generation_id"]
        breach = r.wait(lambda e: e["event"] == "limit_breached", C_TIMEOUT + 120, "the timeout's breach")
        steps_at_breach = [s for s in r.steps(clicked) if s[0] <= ts(breach) and s[1] >= 1]
        prep_line = r.first("Preparation time:", clicked)
        t.check("C: the %ds timeout is breached before the first sampling step, phase preparation" % C_TIMEOUT,
                breach["limit"] == "timeout" and breach.get("phase") == "preparation" and not steps_at_breach
                and (prep_line is None or prep_line[0] >= ts(breach) - 1), (breach, steps_at_breach, prep_line))
        stopped = r.wait(lambda e: e["event"] == "generation_stopped", 600, "the generation stopped")
        fin = r.wait(lambda e: e["event"] == "generation_finished" and e["generation_id"] == gid, 120,
                     "the generation finished")
        us = r.first("User stopped", clicked)
        prep = r.first(r"Preparation time: ([\d.]+) seconds", clicked, regex=True)
        figure("C", "breach after Generate (events: started to breach)", ts(breach) - ts(g))
        if prep:
            figure("C", "Fooocus's `Preparation time`", float(re.search(r"([\d.]+) seconds", prep[1]).group(1)))
        figure("C", "stop latency: breach to generation over (took_s)", stopped.get("took_s"))
        if us:
            figure("C", "stop latency: breach to Fooocus's `User stopped` (console)", us[0] - ts(breach))
        figure("C", "grace given (%s)" % stopped.get("grace"), stopped.get("grace_s"))
        steps_done = [s for s in r.steps(clicked) if s[1] >= 1]
        figure("C", "steps Fooocus ran before it stopped", steps_done[-1][1] if steps_done else 0)
        t.check("C: the guard stopped it gracefully, the stop naming the phase preparation",
                stopped["how"] == "graceful" and stopped.get("phase") == "preparation" and stopped["steps"]
                and stopped["steps"][0]["step"] == "graceful" and stopped["steps"][0]["result"] == "ended",
                "%s\n--- console after Generate:\n%s" % (json.dumps(stopped), "\n".join(
                    "%7.1f %s" % (tt - clicked, l) for tt, l in r.console(clicked)[-40:])))
        t.check("C: the grace covered the phase (%r, %.0f s)" % (stopped.get("grace"), stopped.get("grace_s", 0)),
                stopped.get("grace") == "until the first step", stopped.get("grace"))
        t.check("C: Fooocus printed `User stopped` (it keeps the request until its first step)", us is not None,
                r.tail())
        t.check("C: the generation ends timed_out", fin["outcome"] == "timed_out", fin)
        time.sleep(2)
        evs = r.events()
        t.check("C: the same Fooocus went on (pid %d alive, one `started`, no exit or restart)" % pid,
                alive(pid) and [e["event"] for e in evs].count("started") == 1
                and not {"exited", "restarting"} & {e["event"] for e in evs}, [e["event"] for e in evs])
        try:
            status = urllib.request.urlopen(rd["url"], timeout=60).status
        except Exception as e:  # noqa: BLE001
            status = repr(e)
        t.check("C: the UI still answers after the stop", status == 200, status)
        summary = json.dumps(stopped.get("summary") or {})
        t.check("C: the stop's words name the preparation (not only `raise the timeout`)",
                "prepar" in summary.lower(), summary)
    except AssertionError as e:
        t.check("C: run", False, str(e))
    finally:
        r.show()
        r.close()


# --- M: a RAM cap below what loading needs -----------------------------------------------------------
M_CAP = os.environ.get("FG_REAL_M_CAP", "3000M")  # ready needs 4.0 GiB (A); the state dict alone 1.9 GB


def scenario_m(cli, t):
    r = Run(cli, "M", ["--memory", M_CAP, "--timeout", "0", "--startup-timeout", "%ds" % READY_S,
                       "--restart", "never"])
    try:
        # Loading alone passes the cap: the kernel (or the guard) ends Fooocus during the load.
        end = time.time() + 300
        while time.time() < end and r.guard.poll() is None:
            evs = r.events()
            if any(e["event"] in ("exited", "out_of_memory") for e in evs) and any(e["event"] == "exited" for e in evs):
                break
            time.sleep(0.5)
        time.sleep(2)
        evs = r.events()
        names = [e["event"] for e in evs]
        exited = [e for e in evs if e["event"] == "exited"]
        breach = [e for e in evs if e["event"] == "limit_breached" and e["limit"] == "memory"]
        loads = [e for e in evs if e["event"] == "phase" and e.get("phase") == "model_load"]
        figure("M", "RAM cap", M_CAP)
        if exited:
            figure("M", "start to exit", ts(exited[0]) - r.t0)
        t.check("M: Fooocus never got ready under a %s cap" % M_CAP, "ready" not in names, names)
        t.check("M: the load had begun (a model_load phase event before the end)",
                bool(loads) and bool(exited) and ts(loads[0]) <= ts(exited[0]), names)
        t.check("M: reported as out of memory (exited with oom, or a memory breach)",
                any(e.get("oom") for e in exited) or bool(breach) or "out_of_memory" in names,
                [e for e in evs if e["event"] in ("exited", "limit_breached", "out_of_memory")])
        if breach:
            t.check("M: the breach names the phase model_load", breach[0].get("phase") == "model_load", breach[0])
        t.check("M: Fooocus was loading when it died (it printed `model_type`, never `App started successful`)",
                r.first("model_type ") is not None and r.first("App started successful") is None, r.tail())
        r.guard.wait(60)
        t.check("M: --restart never: no second start, the guard ended (exit %s)" % r.guard.returncode,
                names.count("started") == 1 and "restarting" not in names and r.guard.returncode is not None, names)
    except AssertionError as e:
        t.check("M: run", False, str(e))
    finally:
        r.show()
        r.close()


def main():
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        sys.exit(__doc__)
    # The CLI: the first argument when it is not a check, else the workspace's debug build.
    if args and not args[0].startswith("-") and args[0].upper() not in ("A", "B", "C", "M"):
        cli, rest = os.path.abspath(args[0]), args[1:]
    else:
        cli, rest = os.path.join(os.path.dirname(TESTS), "target", "debug", "fooocus-guard-cli"), args
    if not os.access(cli, os.X_OK):
        sys.exit("test_real: no %s: cargo build -p guard-cli" % cli)
    known = ["A", "B", "C", "M"]
    wanted = []
    while rest:
        if rest[0] == "--check" and len(rest) > 1:
            wanted.append(rest[1].upper())
            rest = rest[2:]
        else:
            wanted.append(rest[0].upper())
            rest = rest[1:]
    bad = [w for w in wanted if w not in known]
    if bad:
        sys.exit("test_real: no check %s: the checks are %s" % (", ".join(bad), " ".join(known)))
    wanted = wanted or known
    for p in (VENV_PY, TREE, os.path.join(MODELS, "checkpoints", CHECKPOINT)):
        if not os.path.exists(p):
            sys.exit("test_real: %s is missing: run tests/real/setup.sh" % p)
    t = Tally()
    took = {}
    for s in known:
        if s not in wanted or (s == "A" and "B" in wanted):
            continue  # A's checks run at the start of B's run when both are asked
        start = time.time()
        print("--- %s" % {"A": "A: ready", "B": ("A+B: ready, then " if "A" in wanted else "B: ") + "a timeout mid-sampling",
                         "C": "C: a timeout in preparation", "M": "M: a RAM cap below the load"}[s], flush=True)
        if s == "A":
            scenario_a(cli, t)
        elif s == "B":
            scenario_b(cli, t, "A" in wanted)
        elif s == "C":
            scenario_c(cli, t)
        else:
            scenario_m(cli, t)
        took[s] = time.time() - start
        print("    %s took %.0f s" % (s, took[s]), flush=True)
    print("\nmeasured on real Fooocus 2.5.5 (torch 2.1.0, CPU, %d cores):" % (os.cpu_count() or 0))
    print("  %-3s %-62s %s" % ("", "what", "value"))
    for sc, what, v in FIGURES:
        print("  %-3s %-62s %s" % (sc, what, fmt(v)))
    for s, v in took.items():
        print("  %-3s %-62s %s" % (s, "scenario's wall time", fmt(v)))
    sys.exit(t.summary())


if __name__ == "__main__":
    main()
