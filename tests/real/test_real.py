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
  S  a stall: once sampling steps came, every process of Fooocus's tree gets SIGSTOP (alive, no
     progress, as a hung driver or a deadlock looks): the stall limit fires in sampling (not the
     timeout), the graceful stop cannot work, the tree is killed and started again.
     S runs beside B when both are asked (from B's first step): it is frozen, idle, for most
     of its time.
  R  the start-up race: the worker's imports (the model load) end before launch(), so 2.5.5 prints
     an AttributeError instead of `App started successful`: the guard must still see it ready.
     The order is forced by holding Fooocus's main thread (ptrace) in launch.py's second pass.

  python3 tests/real/test_real.py [CLI] [--check A|B|C|M|S|R ...]    (CLI: target/debug/fooocus-guard-cli)

Run it with the real venv's python (it has gradio_client; it re-executes itself with it
otherwise). Environment: FG_REAL_CACHE (setup.sh's cache), FG_REAL_KEEP=1 keeps each run's
folder, FG_REAL_SHOW=1 prints each run's events, FG_REAL_B_TIMEOUT (seconds, default 150),
FG_REAL_S_STALL (S's stall limit, seconds, default 120), FG_REAL_R_STARTUP (R's start-up limit, 120).
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


def scenario_b(cli, t, also_a, sampling=None):
    """`sampling` (a threading.Event) is set once generation 1 samples, or B ends: what runs
    beside B starts then, so that it never slows B's preparation past its timeout."""
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
        if sampling is not None:
            end = time.time() + B_TIMEOUT + 120
            while time.time() < end and not r.steps(clicked) and r.guard.poll() is None \
                    and not any(e["event"] == "limit_breached" for e in r.events()):
                time.sleep(0.2)
            sampling.set()
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
        if sampling is not None:
            sampling.set()
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


# --- S: a stall in sampling: Fooocus lives but makes no progress ---------------------------------------
# The stall limit counts from the last progress the guard saw (a step, an image, a model-load line);
# Fooocus prints nothing while it expands and encodes the prompt (9.7-72 s here), so a stall limit
# below that fires in preparation: S's limit sits above it (FG_REAL_S_STALL, seconds).
S_STALL = float(os.environ.get("FG_REAL_S_STALL", "120"))
S_FREEZE_AT = 2  # freeze once Fooocus printed this step


def tree_pids(root):
    """`root` and its descendants now (from /proc's parent links)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().split(") ")[-1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][0]
    except OSError:
        return None


def scenario_s(cli, t):
    """A stall made for real: once the guard has seen sampling steps, every process of the tree
    the guard started gets SIGSTOP -- alive, holding its memory and its port, making no progress,
    which is what a hung GPU driver or a deadlock looks like from outside. The stall limit must
    fire (not the timeout: it is off), in sampling; the graceful stop cannot be answered by a
    frozen Fooocus, so the tree must be killed and, with --restart on-failure, started again."""
    r = Run(cli, "S", ["--timeout", "0", "--stall-timeout", "%ds" % S_STALL, "--grace", "10s",
                       "--startup-timeout", "%ds" % READY_S, "--restart", "on-failure"], steps=B_STEPS)
    frozen = []
    try:
        rd = ready(r, t, "S")
        pid = [e for e in r.events() if e["event"] == "started"][0]["pid"]
        page = ui_driver.Page(rd["url"], "a lighthouse at dusk")
        page.set("slider", "Forced Overwrite of Sampling Step", B_STEPS)
        clicked = time.time()
        page.generate()
        g = r.wait(lambda e: e["event"] == "generation_started", 120, "generation started (%s)" % page.errors)
        gid = g["generation_id"]
        end = time.time() + 600
        while time.time() < end and not any(s[1] >= S_FREEZE_AT for s in r.steps(clicked)):
            if r.guard.poll() is not None or any(e["event"] == "limit_breached" for e in r.events()):
                break
            time.sleep(0.1)
        early = [e for e in r.events() if e["event"] == "limit_breached"]
        if early or not any(s[1] >= S_FREEZE_AT for s in r.steps(clicked)):
            raise AssertionError("no step %d before a breach or 600 s (breach: %s)\n%s" % (S_FREEZE_AT, early, r.tail()))
        frozen = tree_pids(pid)
        for p in frozen:
            try:
                os.kill(p, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        frozen_at = time.time()
        time.sleep(0.5)
        states = {p: proc_state(p) for p in frozen}
        steps_at_freeze = r.steps(clicked)
        figure("S", "stall limit", "%d s" % S_STALL)
        figure("S", "processes frozen (SIGSTOP), step reached", "%d, step %d" % (len(frozen), steps_at_freeze[-1][1]))
        t.check("S: the tree Fooocus runs in is frozen (SIGSTOP to its %d processes: state T)" % len(frozen),
                frozen and all(s == "T" for s in states.values()), states)
        breach = r.wait(lambda e: e["event"] == "limit_breached", S_STALL + 180, "the stall's breach")
        last_step = [s for s in r.steps(clicked) if s[0] <= ts(breach)][-1]
        figure("S", "last step printed to the breach", ts(breach) - last_step[0])
        figure("S", "freeze to the breach", ts(breach) - frozen_at)
        t.check("S: the stall limit is breached (not the timeout: it is off), generation %d, phase sampling" % gid,
                breach["limit"] == "stall" and breach.get("generation_id") == gid and breach.get("phase") == "sampling",
                breach)
        t.check("S: it fell due %.0f s after the last step Fooocus printed (%.1f s; observed %.1f s)" % (
            S_STALL, ts(breach) - last_step[0], breach.get("observed", -1)),
            S_STALL - 1 <= ts(breach) - last_step[0] <= S_STALL + 15 and breach.get("observed", 0) >= S_STALL - 0.5,
            (breach, last_step))
        stopped = r.wait(lambda e: e["event"] == "generation_stopped", 600, "the generation stopped")
        gone = None
        end = time.time() + 120
        while time.time() < end:
            if not any(alive(p) for p in frozen):
                gone = time.time()
                break
            time.sleep(0.05)
        fin = r.wait(lambda e: e["event"] == "generation_finished" and e["generation_id"] == gid, 120,
                     "the generation finished")
        figure("S", "grace given (%s)" % stopped.get("grace"), stopped.get("grace_s"))
        figure("S", "breach to generation over (took_s: the kill)", stopped.get("took_s"))
        if gone:
            figure("S", "breach to the whole tree gone (/proc)", gone - ts(breach))
        kinds = [s["step"] for s in stopped.get("steps") or []]
        t.check("S: the graceful stop could not end a frozen Fooocus: the tree was killed (how killed, limit stall)",
                stopped["how"] == "killed" and stopped.get("limit") == "stall" and stopped.get("generation_id") == gid
                and "kill" in kinds, stopped)
        t.check("S: the generation ends stalled", fin["outcome"] == "stalled", fin)
        t.check("S: no process of the frozen tree survives (%s)" % frozen, gone is not None,
                {p: proc_state(p) for p in frozen})
        t.check("S: Fooocus printed no step and no `User stopped` while frozen",
                not [s for s in r.steps(frozen_at + 0.5) if s[2] == B_STEPS] and r.count("User stopped", clicked) == 0,
                r.tail())
        # --restart on-failure: a limit's kill is followed by a start, which says why.
        rd2 = r.wait(lambda e: e["event"] == "ready" and ts(e) > ts(breach), READY_S, "ready again after the kill")
        evs = r.events()
        starts = [e for e in evs if e["event"] == "started"]
        restarting = [e for e in evs if e["event"] == "restarting"]
        figure("S", "kill to ready again (the restart)", ts(rd2) - ts(stopped))
        t.check("S: restarted (a `restarting` with its reason, a second `started` with a new pid, ready again)",
                len(restarting) == 1 and len(starts) == 2 and starts[1]["pid"] != pid and ts(restarting[0]) <= ts(starts[1]),
                [(e["event"], e.get("reason", e.get("pid"))) for e in evs if e["event"] in ("started", "restarting", "exited")])
        t.check("S: the timeout never fired", not [e for e in evs if e["event"] == "limit_breached" and e["limit"] != "stall"],
                [e for e in evs if e["event"] == "limit_breached"])
        try:
            status = urllib.request.urlopen(rd2["url"], timeout=60).status
        except Exception as e:  # noqa: BLE001
            status = repr(e)
        t.check("S: the restarted Fooocus answers at the ready address", status == 200, status)
    except AssertionError as e:
        t.check("S: run", False, str(e))
    finally:
        for p in frozen:  # a failed run must not leave frozen processes behind
            if alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        r.show()
        r.close()


# --- R: the start-up race: the ready line never prints ---------------------------------------------
# 2.5.5's ready line is printed by the worker thread (modules/async_worker.py:208-213), which
# modules/async_worker.py:1485 starts while webui.py:10 imports it; the line reads
# shared.gradio_root (set at webui.py:153) and its server_name/local_url (set by Gradio's launch(),
# webui.py:1120). When the worker's imports -- the model load among them
# (modules/default_pipeline.py:270) -- end before launch() has run, the attribute access fails, the
# `except` prints the exception instead, and `App started successful` never prints; Gradio goes on
# to listen all the same. R makes that order happen: the main thread is held (ptrace, on that
# thread only) at a point where it holds no lock the worker needs -- the second pass of launch.py's
# temp-folder cleanup (webui.py:18 `import launch` runs launch.py's body again, after the worker
# started), inside os.listdir, where Python has released the GIL -- until the worker printed its
# line, then let go. Nothing of Fooocus's is changed; the schedule is one a machine produces
# whenever building the UI takes longer than loading the model.
R_STARTUP = float(os.environ.get("FG_REAL_R_STARTUP", "120"))  # the guard's start-up limit in R
RACE_LINES = ("'NoneType' object has no attribute 'local_url'", "'Blocks' object has no attribute 'server_name'")

PTRACE_GETREGS, PTRACE_DETACH, PTRACE_SYSCALL = 12, 17, 24
PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_O_TRACESYSGOOD = 0x4206, 0x4207, 1
WALL = 0x40000000
SYS_OPENAT = 257  # x86_64


class MainThreadHold(threading.Thread):
    """Traces Fooocus's main thread (its pid; the worker thread is not traced) from syscall to
    syscall; at the `openat` of `path` for which `second()` turns true, keeps it stopped there
    until `release` is set. All ptrace calls come from this thread (the tracer)."""

    def __init__(self, pid, path, second):
        super().__init__(daemon=True)
        self.pid, self.path, self.second = pid, path.encode(), second
        self.release = threading.Event()
        self.held = threading.Event()
        self.held_at = None
        self.error = None
        self.syscalls = 0
        import ctypes
        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long

    def ptrace(self, req, data=0, addr=None):
        if self.libc.ptrace(req, self.pid, addr, self.ctypes.c_void_p(data)) == -1:
            e = self.ctypes.get_errno()
            raise OSError(e, "ptrace(%d): %s" % (req, os.strerror(e)))

    def regs(self):
        buf = (self.ctypes.c_ulonglong * 27)()
        if self.libc.ptrace(PTRACE_GETREGS, self.pid, None, self.ctypes.cast(buf, self.ctypes.c_void_p)) == -1:
            raise OSError(self.ctypes.get_errno(), "GETREGS")
        return buf  # r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip ...

    def run(self):
        try:
            self.ptrace(PTRACE_SEIZE, PTRACE_O_TRACESYSGOOD)
            self.ptrace(PTRACE_INTERRUPT)
            os.waitpid(self.pid, WALL)
            sig = 0
            with open("/proc/%d/mem" % self.pid, "rb", buffering=0) as mem:
                while True:
                    self.ptrace(PTRACE_SYSCALL, sig)
                    sig = 0
                    _, st = os.waitpid(self.pid, WALL)
                    if os.WIFEXITED(st) or os.WIFSIGNALED(st):
                        self.error = "Fooocus ended while traced"
                        return
                    s = os.WSTOPSIG(st)
                    if s == (signal.SIGTRAP | 0x80):
                        r = self.regs()
                        if r[10] != (2**64 - 38):  # rax = -ENOSYS only at a syscall's entry
                            continue
                        self.syscalls += 1
                        if r[15] != SYS_OPENAT:
                            continue
                        try:
                            mem.seek(r[13])
                            path = mem.read(4096).split(b"\0")[0]
                        except OSError:
                            continue
                        if path.rstrip(b"/") != self.path.rstrip(b"/"):
                            continue
                        end = time.time() + 5
                        while time.time() < end and not self.second():
                            time.sleep(0.05)
                        if not self.second():
                            continue  # the first pass's cleanup, before the worker exists
                        self.held_at = time.time()
                        self.held.set()
                        self.release.wait()
                        break
                    elif st >> 16:
                        continue  # a ptrace event stop
                    else:
                        sig = s  # a signal for the thread: delivered
            self.ptrace(PTRACE_DETACH)
        except Exception as e:  # noqa: BLE001
            self.error = repr(e)
            self.held.set()


def scenario_r(cli, t):
    r = Run(cli, "R", ["--timeout", "0", "--startup-timeout", "%ds" % R_STARTUP, "--restart", "never"])
    hold = None
    try:
        st = r.wait(lambda e: e["event"] == "started", 60, "started")
        pid = st["pid"]
        temp = os.path.join(r.tmp, "t", "fooocus")
        hold = MainThreadHold(pid, temp, lambda: r.count("[Cleanup] Attempting to delete content of temp dir") >= 2)
        hold.start()
        if not hold.held.wait(300) or hold.error:
            raise AssertionError("the main thread was not held: %s\n%s" % (hold.error, r.tail()))
        figure("R", "start to the main thread held (launch.py's second pass)", hold.held_at - r.t0)
        # The worker thread goes on alone: imports, the model load, its ready line (or not).
        worker = r.wait_line("Started worker with PID", 600)
        time.sleep(3)  # its next print (the ready line or the exception) follows at once
        after = [l for _, l in r.console(worker[0])][:3]
        figure("R", "start to the worker's `Started worker` (main thread held)", worker[0] - r.t0)
        t.check("R: upstream's race happened: the worker ran before launch(), printed %r, not its ready line" % (
            next((x for x in RACE_LINES if any(x in l for l in after)), "?")),
            any(any(x in l for x in RACE_LINES) for l in after) and r.first("App started successful") is None
            and r.first("Running on local URL") is None, after)
        released = time.time()
        hold.release.set()
        hold.join(30)
        figure("R", "main thread held for", released - hold.held_at)
        listening = r.wait_line("Running on local URL", 300)
        figure("R", "release to Gradio's `Running on local URL`", listening[0] - released)
        # Fooocus is whole: Gradio serves the page and the worker waits for tasks; only its ready
        # line is missing.
        own = re.search(r"Running on local URL:\s+(\S+)", listening[1]).group(1)
        time.sleep(2)
        for label, url in (("Fooocus's own address", own), ("the guard's port", "http://127.0.0.1:%d/" % r.port)):
            try:
                status = urllib.request.urlopen(url, timeout=60).status
            except Exception as e:  # noqa: BLE001
                status = type(e).__name__
            figure("R", "after the race, the UI at %s" % label, status)
            if url == own:
                t.check("R: Fooocus itself is up after the race (its UI answers at %s)" % own, status == 200, status)
        end = time.time() + R_STARTUP + 90
        rd = None
        while time.time() < end and r.guard.poll() is None:
            evs = r.events()
            rd = next((e for e in evs if e["event"] == "ready"), None)
            if rd or any(e["event"] in ("limit_breached", "unhealthy", "exited") for e in evs):
                break
            time.sleep(0.2)
        time.sleep(1)
        evs = r.events()
        starts = [e for e in evs if e["event"] == "started"]
        if rd:
            figure("R", "Gradio listening to the guard's `ready`", ts(rd) - listening[0])
        for e in evs:
            if e["event"] == "limit_breached":
                figure("R", "Gradio listening to the guard's %s breach (%s)" % (e["limit"], e.get("action")),
                       ts(e) - listening[0])
        t.check("R: the guard still reports Fooocus ready, in the same process, at its port",
                rd is not None and len(starts) == 1 and str(r.port) in rd.get("url", "")
                and r.first("App started successful") is None,
                "events: %s\n--- console:\n%s" % ([(e["event"], e.get("limit") or e.get("reason") or e.get("url") or "")
                                                   for e in evs], "\n".join(l for _, l in r.console(worker[0] - 1)[:14])))
        if rd:
            try:
                status = urllib.request.urlopen(rd["url"], timeout=60).status
            except Exception as e:  # noqa: BLE001
                status = repr(e)
            t.check("R: the UI answers at the ready address", status == 200, status)
    except AssertionError as e:
        t.check("R: run", False, str(e))
    finally:
        if hold is not None:
            hold.release.set()
            hold.join(10)
        r.show()
        r.close()


def main():
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        sys.exit(__doc__)
    # The CLI: the first argument when it is not a check, else the workspace's debug build.
    if args and not args[0].startswith("-") and args[0].upper() not in ("A", "B", "C", "M", "S", "R"):
        cli, rest = os.path.abspath(args[0]), args[1:]
    else:
        cli, rest = os.path.join(os.path.dirname(TESTS), "target", "debug", "fooocus-guard-cli"), args
    if not os.access(cli, os.X_OK):
        sys.exit("test_real: no %s: cargo build -p guard-cli" % cli)
    known = ["A", "B", "C", "M", "S", "R"]
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
    # S spends most of its time frozen, waiting out its stall limit with no CPU in use: it runs
    # beside B (about 1.5 min saved) with its own tally, joined once B is done. It starts once
    # B's generation samples: B's preparation, which its timeout must outlast, runs alone.
    beside_b = None
    b_sampling = threading.Event()
    if "S" in wanted and "B" in wanted:
        s_tally = Tally()

        def run_s():
            b_sampling.wait(READY_S + B_TIMEOUT)
            print("--- S: a stall in sampling (Fooocus frozen), beside B (B samples)", flush=True)
            start = time.time()
            try:
                scenario_s(cli, s_tally)
            except Exception as e:  # noqa: BLE001 -- a crash of the thread is a failed check
                s_tally.check("S: run", False, repr(e))
            took["S"] = time.time() - start

        beside_b = threading.Thread(target=run_s, name="scenario-S")
        beside_b.start()
    for s in known:
        if s not in wanted or (s == "A" and "B" in wanted) or (s == "S" and beside_b):
            continue  # A's checks run at the start of B's run when both are asked; S may run beside B
        start = time.time()
        print("--- %s" % {"A": "A: ready", "B": ("A+B: ready, then " if "A" in wanted else "B: ") + "a timeout mid-sampling",
                         "C": "C: a timeout in preparation", "M": "M: a RAM cap below the load",
                         "S": "S: a stall in sampling (Fooocus frozen)", "R": "R: the start-up race"}[s], flush=True)
        if s == "A":
            scenario_a(cli, t)
        elif s == "B":
            scenario_b(cli, t, "A" in wanted, b_sampling if beside_b else None)
        elif s == "C":
            scenario_c(cli, t)
        elif s == "M":
            scenario_m(cli, t)
        elif s == "S":
            scenario_s(cli, t)
        else:
            scenario_r(cli, t)
        took[s] = time.time() - start
        print("    %s took %.0f s" % (s, took[s]), flush=True)
        if s == "B" and beside_b:
            beside_b.join()
            t.passed += s_tally.passed
            t.failed += s_tally.failed
            print("    S (beside B) took %.0f s" % took.get("S", 0), flush=True)
    print("\nmeasured on real Fooocus 2.5.5 (torch 2.1.0, CPU, %d cores):" % (os.cpu_count() or 0))
    print("  %-3s %-62s %s" % ("", "what", "value"))
    for sc, what, v in FIGURES:
        print("  %-3s %-62s %s" % (sc, what, fmt(v)))
    for s, v in took.items():
        print("  %-3s %-62s %s" % (s, "scenario's wall time", fmt(v)))
    sys.exit(t.summary())


if __name__ == "__main__":
    main()
