#!/usr/bin/env python3
"""A Fooocus simulator: prints what Fooocus prints, version by version, serves its HTTP API on
its port, and can be told to misbehave (hang, stall, allocate RAM, burn CPU, spawn children,
ignore SIGTERM, crash, lose its worker thread). The workhorse of Fooocus Guard's tests.

Every line it prints for a version is one of that version's own format strings (checked
against the pinned upstream snapshots by test_upstream_lines.py), and its argument parser
accepts and refuses what that version's parser does (upstream_flags.json, generated from the
upstream parsers and checked by the same test).

Usage:
  fooocus_sim.py [FOOOCUS FLAGS] [--sim-version V] [--scenario FILE] [--merge-stderr] [--truth FILE]
  fooocus_sim.py make-install DIR [--sim-version V] [--layout venv|portable|conda|api] [--scenario FILE]

Standard library only. See README.md beside this file for the scenario format.
"""
import argparse
import base64
import hashlib
import json
import os
import queue
import signal
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))

# --- versions as data --------------------------------------------------------------------
# family: which worker prints the task (see Sim.run_task); gradio: the version it pins
# (/config); stop_elem: the Stop button has elem_id 'stop_button' (2.1.680+, MRE); skip: a Skip
# button exists (2.1.34+); pid_line: `Started worker with PID` (2.2+); argv_line: `[System
# ARGV]` (2.1.780+); dies: a task error kills the worker thread (before 2.0.90, MRE).
VERSIONS = {
    "2.0.78": dict(version="2.0.78", port=7860, family="2.0", gradio="3.39.0", global_stop=True,
                   stop_elem=False, skip=False, dies=True),
    "2.1.679": dict(version="2.1.679", port=7860, family="2.1", gradio="3.39.0", global_stop=True,
                    stop_elem=False, skip=True),
    "2.1.865": dict(version="2.1.865", port=7865, family="2.1", gradio="3.41.2", global_stop=True,
                    argv_line=True, lcm=True),
    "2.2.1": dict(version="2.2.1", port=7865, family="2.2", pid_line=True, argv_line=True, lcm=True),
    "2.3.1": dict(version="2.3.1", port=7865, family="2.2", pid_line=True, argv_line=True, lcm=True),
    "2.4.3": dict(version="2.4.3", port=7865, family="2.4", pid_line=True, argv_line=True, lcm=True),
    "2.5.5": dict(version="2.5.5", port=7865, family="2.5", pid_line=True, argv_line=True, lcm=True),
    "mashb1t-2.6.5": dict(version="2.6.5 (mashb1t)", port=7865, family="2.5", pid_line=True,
                          argv_line=True, lcm=True),
    "mre-2.0.78.5": dict(version="2.0.78.5 MRE", port=7860, family="2.0", global_stop=True,
                         skip=False, dies=True, mre=True),
    "api-0.3.33": dict(version="0.3.33", port=8888, family="api-0.3", api=True, global_stop=True, lcm=True),
    "api-0.4.1.1": dict(version="0.4.1.1", port=8888, family="api-0.4", api=True, global_stop=True, lcm=True),
    "api-0.5.0.1": dict(version="0.5.0.1", port=8888, family="api-0.5", api=True, global_stop=True, lcm=True),
}
DEFAULTS = dict(gradio="3.41.2", global_stop=False, stop_elem=True, skip=True, pid_line=False,
                argv_line=False, dies=False, lcm=False, api=False, mre=False)
for _v in VERSIONS.values():
    for _k, _d in DEFAULTS.items():
        _v.setdefault(_k, _d)
# The short names the tests used before versions were named by upstream snapshot.
ALIASES = {"2.0": "2.0.78", "2.1": "2.1.865", "2.3": "2.3.1", "2.4": "2.4.3", "2.5": "2.5.5",
           "mashb1t": "mashb1t-2.6.5", "mre": "mre-2.0.78.5", "api": "api-0.4.1.1"}


def resolve(name):
    return ALIASES.get(name, name)


OOM_TEXT = {
    "cuda": ("torch.cuda.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 8.00 GiB total capacity)"),
    "cuda_error": ("RuntimeError", "CUDA error: out of memory"),
    "cpu": ("RuntimeError", "[enforce fail at alloc_cpu.cpp:83] : DefaultCPUAllocator: not enough memory: you tried to allocate 2147483648 bytes."),
}
PYTHON = "3.10.9 (main, Dec 15 2022, 10:44:50) [GCC 11.2.0]"
PROMPT = "a lighthouse at dusk, dramatic light, highly detailed"
LOG_HTML = "/content/Fooocus/outputs/2026-11-24/log.html"
# Gradio networking.py, with an explicit server_port that is taken.
PORT_TAKEN = ("Cannot find empty port in range: {p}-{p}. You can specify a different port by setting "
              "the GRADIO_SERVER_PORT environment variable or passing the `server_port` parameter to `launch()`.")


class Out:
    """Writes lines, counts the merged output's line numbers, and records the ground truth."""

    def __init__(self, merge, truth_path):
        self.merge = merge
        self.lock = threading.Lock()
        self.line = 1
        self.truth = open(truth_path, "a") if truth_path else None

    def _write(self, stream, text):
        s = sys.stdout if (self.merge or stream == "out") else sys.stderr
        s.write(text)
        s.flush()
        self.line += text.count("\n")

    def say(self, text, stream="out", events=()):
        """One line; `events` are (kind, fields) recorded at this line."""
        with self.lock:
            for kind, fields in events:
                self.record(kind, fields)
            self._write(stream, text + "\n")

    def redraw(self, text, final, events=()):
        """A tqdm bar on stderr, redrawn with \\r (the final draw ends the line)."""
        with self.lock:
            for kind, fields in events:
                self.record(kind, fields)
            self._write("err", "\r" + text + ("\n" if final else ""))

    def record(self, kind, fields):
        if self.truth:
            e = {"line": self.line, "kind": kind}
            e.update(fields)
            self.truth.write(json.dumps(e) + "\n")
            self.truth.flush()


# --- WebSocket: the least of RFC 6455 the Gradio queue below and tab.py need: the handshake's
# accept key, and text, close and ping frames over a blocking socket. Here, not in a module of its
# own: the app's demo runs this file alone (crates/app/src/demo.rs).
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A queue message is a few hundred bytes; a frame claiming more is not one of ours.
WS_MAX_FRAME = 1 << 20


def ws_accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_send(sock, opcode, payload, masked):
    """One frame; a client masks its frames (RFC 6455 5.3), a server does not."""
    head = bytearray([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if masked:
        mask = os.urandom(4)
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes(head) + payload)


def ws_send_text(sock, text, masked):
    ws_send(sock, 0x1, text.encode(), masked)


def _ws_read(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def ws_recv_text(sock):
    """The next text message (pings answered, other frames skipped); None once the peer closed
    (a close frame or the end of the connection)."""
    while True:
        try:
            b0, b1 = _ws_read(sock, 2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", _ws_read(sock, 2))[0]
            elif n == 127:
                n = struct.unpack(">Q", _ws_read(sock, 8))[0]
            if n > WS_MAX_FRAME:
                return None
            mask = _ws_read(sock, 4) if b1 & 0x80 else None
            payload = _ws_read(sock, n)
        except (EOFError, OSError):
            return None
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        opcode = b0 & 0x0F
        if opcode == 0x8:
            return None
        if opcode == 0x9:
            ws_send(sock, 0xA, payload, masked=mask is None)
            continue
        if opcode == 0x1:
            return payload.decode("utf-8", "replace")

def activity(what):
    return ("activity", {"what": what})


class Sim:
    def __init__(self, args, scenario, vname):
        self.args = args
        self.sc = scenario
        self.vname = vname
        self.v = VERSIONS[vname]
        self.out = Out(args.merge_stderr, args.truth)
        self.task_lock = threading.Lock()
        # Told when the worker is done with a task (a tab's next task waits for it).
        self.task_done = threading.Condition(self.task_lock)
        self.task = None  # dict of the running task
        self.stop_flag = threading.Event()
        self.skip_flag = threading.Event()
        self.ready = False
        self.worker_dead = False
        self.port = None
        self.memory = []
        self.job = 0
        # Gradio's queue runs one call at a time (Fooocus's `.queue()`: concurrency 1).
        self.queue_lock = threading.Lock()

    # --- printing helpers
    def log(self, level, text, events=()):
        """Fooocus-API 0.4+: its root logger on stdout (`fooocusapi/utils/logger.py`), colours
        included (colorlog colours pipes too)."""
        colour = {"INFO": "\x1b[32m", "WARNING": "\x1b[33m", "ERROR": "\x1b[31m"}[level]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.out.say("%s[%s] %-8s\x1b[0m \x1b[34m%s\x1b[0m" % (colour, stamp, level, text), events=events)

    def fooocus(self, text, events=None, what="task"):
        """The worker's `progressbar(...)`: `[Fooocus] <text>` (logged on the API 0.4+); an
        activity unless `events` says what else it is."""
        ev = [activity(what)] if events is None else list(events)
        if self.v["family"] in ("api-0.4", "api-0.5"):
            self.log("INFO", "[Fooocus] " + text, ev)
        else:
            self.out.say("[Fooocus] " + text, events=ev)

    def traceback(self, exception, message, extra_events=(), frames=None, line_events=None):
        ev = [("error", {"exception": exception, "message": message})] + list(extra_events)
        self.out.say("Traceback (most recent call last):", "err", (line_events or []) + ev)
        for f in frames or [('/content/Fooocus/modules/async_worker.py", line 1437, in worker', "handler(task)")]:
            self.out.say('  File "%s' % f[0], "err")
            self.out.say("    " + f[1], "err")
        self.out.say('  File "/content/Fooocus/ldm_patched/modules/model_management.py", line 540, in load_models_gpu', "err")
        self.out.say("    raise e", "err")
        self.out.say("%s: %s" % (exception, message) if message else exception, "err")

    def thread_death(self, exception, message, extra_events=()):
        """An exception escaping the worker thread's function: Python's threading excepthook."""
        thread = "Thread-3 (task_schedule_loop)" if self.v["api"] else "Thread-2 (worker)"
        self.out.say("Exception in thread %s:" % thread, "err", [("worker_died", {})])
        loop = ('/content/Fooocus-API/fooocusapi/worker.py", line 50, in task_schedule_loop', "process_generate(current_task)") \
            if self.v["api"] else ('/content/Fooocus/modules/async_worker.py", line 390, in worker', "handler(task)")
        self.traceback(exception, message, extra_events, frames=[
            ('/usr/lib/python3.10/threading.py", line 1016, in _bootstrap_inner', "self.run()"),
            ('/usr/lib/python3.10/threading.py", line 953, in run', "self._target(*self._args, **self._kwargs)"),
            loop])

    def pause(self, s=None):
        time.sleep(self.sc.get("startup_seconds", 0.05) if s is None else s)

    # --- start-up
    def startup(self):
        sc, v = self.sc, self.v
        if sc.get("ignore_sigterm"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        if sc.get("spawn_children"):
            self.spawn_children(sc.get("pids_file"))
        if sc.get("allocate_mib"):
            self.allocate(int(sc["allocate_mib"]))
        if sc.get("allocate_step_mib"):
            threading.Thread(target=self.ramp, args=(int(sc["allocate_step_mib"]),), daemon=True).start()
        if sc.get("cpu_burn"):
            self.cpu_burn(sc["cpu_burn"])
        if sc.get("exit_after_seconds") is not None:
            threading.Timer(float(sc["exit_after_seconds"]), lambda: os._exit(0)).start()
        argv = [self.args.prog] + self.args.fooocus_argv
        if v["family"] == "api-0.3":
            self.out.say("[System ARGV] " + str(argv))
        elif v["api"]:
            self.log("INFO", "[System ARGV] " + str(argv))
            self.log("INFO", "[Fooocus API] Python " + PYTHON)
            self.log("INFO", "[Fooocus API] Fooocus API version: " + v["version"])
        else:
            self.out.say("Already up-to-date")
            self.out.say("Update succeeded.")
            self.pause()
            if v["argv_line"]:
                self.out.say("[System ARGV] " + str(argv))
            self.out.say("Python " + PYTHON)
            self.out.say("Fooocus version: " + v["version"], events=[("version", {"version": v["version"]})])
            if self.args.preset and self.vname != "2.1.679":  # 2.1.679 loads it silently
                self.out.say("Loaded preset: /content/Fooocus/presets/%s.json" % self.args.preset)
        crash = sc.get("crash_at_startup")
        if crash:
            time.sleep(float(crash.get("after_seconds", 0.1)))
            self.traceback("RuntimeError", "simulated start-up crash")
            sys.stdout.flush()
            os._exit(int(crash.get("exit_code", 1)))
        if sc.get("download"):
            # torch.hub's download_url_to_file: its line, then a byte-unit bar.
            url, dest = "https://huggingface.co/lllyasviel/fav_models/resolve/main/fav/juggernautXL_v8Rundiffusion.safetensors", \
                "/content/Fooocus/models/checkpoints/juggernautXL_v8Rundiffusion.safetensors"
            self.out.say('Downloading: "%s" to %s' % (url, dest), "err", [activity("download")])
            self.out.say("", "err")
            for pct in (10, 50, 100):
                self.out.redraw("%3d%%|%-10s| %.2fG/6.46G [00:01<00:02, 111MB/s]" % (pct, "\u2588" * (pct // 10), 6.46 * pct / 100),
                                pct == 100, [activity("download")])
        self.serve()
        host = self.display_host()
        url = "http://%s:%d" % (self.bind_host(), self.port)
        if v["api"]:
            self.out.say("INFO:     Uvicorn running on %s (Press CTRL+C to quit)" % url, "err",
                         [("listening", {"url": url}), ("ready", {"url": url})])
            self.ready = True
            if sc.get("worker_dies"):
                # The task loop thread dies (mrhan1993/Fooocus-API#357); the server stays up.
                self.worker_dead = True
                self.thread_death("ImportError", "cannot import name 'apply_wildcards' from 'modules.sdxl_styles'")
                return False
            return True
        # Gradio prints its URL while the models still load (#891, #1085).
        self.out.say("Running on local URL:  " + url, events=[("listening", {"url": url})])
        self.out.say("")
        self.out.say("To create a public link, set `share=True` in `launch()`.")
        self.pause()
        self.out.say("Total VRAM 8192 MB, total RAM 15916 MB")
        self.out.say("Set vram state to: NORMAL_VRAM")
        if v["pid_line"]:
            self.out.say("Started worker with PID %d" % os.getpid(), events=[("worker_started", {"pid": os.getpid()})])
        if sc.get("worker_dies"):
            self.worker_dead = True
            self.thread_death("ImportError", "cannot import name 'xformers' from partially initialized module")
            return False
        self.pause(float(sc.get("ready_delay", 0)) + self.sc.get("startup_seconds", 0.05))
        # async_worker.py: `App started successful. Use the app with {local_url} or
        # {server_name}:{server_port}`; Gradio's local_url says localhost for 0.0.0.0.
        local = "http://%s:%d/" % (host, self.port)
        self.out.say("App started successful. Use the app with %s or %s:%d" % (local, self.bind_host(), self.port),
                     events=[("ready", {"url": local.rstrip("/")})])
        self.ready = True
        return True

    def bind_host(self):
        return self.args.listen or "127.0.0.1"

    def display_host(self):
        h = self.bind_host()
        return "localhost" if h == "0.0.0.0" else h

    def spawn_children(self, pids_file):
        def note(pid):
            if pids_file:
                with open(pids_file, "a") as f:
                    f.write("%d\n" % pid)
            sys.stderr.write("SIM child pid %d\n" % pid)
            sys.stderr.flush()
        note(os.getpid())
        child = os.fork()
        if child == 0:
            grand = os.fork()
            if grand == 0:
                os.setsid()
                note(os.getpid())
                while True:
                    time.sleep(1000)
            note(os.getpid())
            while True:
                time.sleep(1000)

    def allocate(self, mib):
        b = bytearray(mib * 1024 * 1024)
        for i in range(0, len(b), 4096):
            b[i] = 1
        self.memory.append(b)

    def ramp(self, step):
        while True:
            self.allocate(step)
            time.sleep(1)

    def cpu_burn(self, spec):
        for _ in range(int(spec.get("threads", 1))):
            if os.fork() == 0:
                end = time.time() + float(spec.get("seconds", 3600))
                while time.time() < end:
                    pass
                os._exit(0)

    # --- tasks
    def start_task(self, spec):
        with self.task_lock:
            if self.task is not None:
                return False
            self.job += 1
            self.task = dict(spec, job=self.job, step=0, image=0)
            self.stop_flag.clear()
            self.skip_flag.clear()
        if self.worker_dead:
            return True  # queued for a worker that is gone: never runs (the page waits forever)
        threading.Thread(target=self.run_task, daemon=True).start()
        return True

    def task_start_lines(self, t, sc, steps):
        """From the task's first line to `Preparation time`, as each version's worker prints."""
        v, fam = self.v, self.v["family"]
        lcm = v["lcm"] and sc.get("lcm", True)
        start = [("task_start", {})]
        n = int(sc.get("images", 2))
        # The expansion repeats the prompt's first line: the worker splits the prompt into
        # lines (`prompt.split('\n')` in 2.0, `splitlines()` later), the others are extra
        # prompts it does not print.
        prompt = sc.get("prompt", PROMPT)
        prompt = (prompt.split("\n") if fam == "2.0" else prompt.splitlines() or [""])[0].strip()
        if fam == "2.0":
            self.fooocus("Initializing ...", start)
            self.fooocus("Loading models ...", what="model_load")
            self.fooocus("Processing prompts ...")
            for k in range(1, n + 1):
                self.fooocus("Preparing Fooocus text #%d ..." % k)
                self.out.say("[Prompt Expansion] New suffix: " + prompt)
            for k in range(1, n + 1):
                self.fooocus("Encoding base positive #%d ..." % k)
            for k in range(1, n + 1):
                self.fooocus("Encoding base negative #%d ..." % k)
            self.out.say("[ADM] Negative ADM = True")
            return
        if fam.startswith("api-"):
            if fam == "api-0.3":
                self.out.say("[Task Queue] Task queue start task, job_id=%d" % t["job"], events=start)
            elif fam == "api-0.4":
                self.log("INFO", "[Task Queue] Task queue start task, job_id=%d" % t["job"], start)
            else:
                self.log("INFO", "[Task Queue] Start task, job_id=%d, pid=%d" % (t["job"], os.getpid()), start)
            start = []
        say = self.out.say
        if fam == "api-0.4":
            def say(text, events=()):
                self.log("INFO", text, events)
        if lcm:
            if fam == "api-0.4":
                self.log("WARNING", "[Fooocus] Enter LCM mode.", start)
            else:
                say("Enter LCM mode.", events=start)
            start = []
        say("[Parameters] Adaptive CFG = 7", events=start)
        if fam in ("2.4", "2.5", "api-0.4", "api-0.5"):
            say("[Parameters] CLIP Skip = 2")
        say("[Parameters] Sharpness = 2")
        if fam not in ("2.1", "api-0.3"):
            say("[Parameters] ControlNet Softness = 0.25")
        say("[Parameters] CFG = 7.0")
        if self.vname != "2.1.679":
            say("[Parameters] Seed = 1234567890")
        say("[Parameters] Sampler = dpmpp_2m_sde_gpu - karras")
        say("[Parameters] Steps = %d - %d" % (steps, steps // 2))
        self.fooocus("Initializing ...", [])  # a start marker of the task already started
        self.fooocus("Loading models ...", what="model_load")
        if sc.get("download_in_task"):
            self.fooocus("Downloading control models ...", what="download")
        self.fooocus("Processing prompts ...")
        for k in range(1, n + 1):
            self.fooocus("Preparing Fooocus text #%d ..." % k)
            if fam == "api-0.4":
                say("[Prompt Expansion] " + prompt)
            else:
                self.out.say(("[Prompt Expansion] New suffix: " if self.vname == "2.1.679" else "[Prompt Expansion] ") + prompt)
        for k in range(1, n + 1):
            self.fooocus("Encoding positive #%d ..." % k)
        for k in range(1, n + 1):
            self.fooocus("Encoding negative #%d ..." % k)
        # Real 2.5.5 on a CPU spends 16-113 s expanding and encoding the prompt, silent, and
        # looks at Stop only at its first step (the flag is kept until then).
        time.sleep(float(sc.get("prepare_seconds", 0)))
        if fam == "api-0.4":
            self.log("INFO", "[Fooocus] Preparation time: 0.42 seconds", [activity("task")])
        else:
            self.out.say("Preparation time: 0.42 seconds")

    def run_task(self):
        t = self.task
        sc = dict(self.sc)
        sc.update(t)
        v, fam = self.v, self.v["family"]
        n_images = int(sc.get("images", 2))
        steps = int(sc.get("steps", 10))
        step_s = float(sc.get("step_seconds", 0.05))
        tty = bool(sc.get("tty_bars"))
        started = time.time()
        explicit = fam in ("2.4", "2.5", "api-0.5")
        self.task_start_lines(t, sc, steps)
        failed = None
        stopped = False
        dead = False
        ended = False
        for i in range(1, n_images + 1):
            t["image"] = i
            if explicit:
                self.fooocus("Preparing task %d/%d ..." % (i, n_images),
                             [("image_start", {"index": i, "total": n_images})])
            img_start = time.time()
            skipped = False
            # tqdm's first draw, before any step.
            bar0 = "  0%%|          | 0/%d [00:00<?, ?it/s]" % steps
            for k in range(1, steps + 1):
                t["step"] = k
                if i == 1 and k == 1 and (sc.get("oom") or sc.get("task_error")):
                    if sc.get("oom"):
                        exc, msg = OOM_TEXT[sc["oom"].get("form", "cuda")]
                    else:
                        e = sc["task_error"]
                        exc, msg = e.get("exception", "ValueError"), e.get("message", "simulated task error")
                    oom = [("oom", {"message": msg})] if sc.get("oom") else []
                    failed = msg
                    if v["dies"]:
                        # No try around handler(task) (v2.0.780 async_worker.py:387-391, MRE
                        # :609-613): the worker thread dies, no Total time, the page waits.
                        self.thread_death(exc, msg, oom)
                        self.worker_dead = dead = True
                    elif fam in ("api-0.3", "api-0.4"):
                        # worker.py: `Process error: {e}`, then logging.exception's message and
                        # traceback; no "Finish task" follows.
                        if fam == "api-0.3":
                            self.out.say("Process error: " + msg)
                            self.out.say(msg, "err")
                        else:
                            self.log("ERROR", "[Fooocus] Process error: " + msg)
                            self.log("ERROR", msg)
                        self.traceback(exc, msg, oom + [("task_end", {"seconds": None})],
                                       frames=[('/content/Fooocus-API/fooocusapi/worker.py", line 990, in process_generate', "imgs = pipeline.process_diffusion(")])
                        ended = True
                    elif fam == "api-0.5":
                        # worker.py:1573-1578: the outer except, no traceback.
                        # The message is the exception's: the job's id that follows it is not.
                        ev = [("error", {"exception": "TaskError", "message": msg})] + \
                             [("oom", {"message": msg})] * bool(oom) + [("task_end", {"seconds": None})]
                        self.log("ERROR", "[Task Queue] Finish task with error: %s, job_id=%d" % (msg, t["job"]), ev)
                        ended = True
                    else:
                        # 2.0.90+: traceback.print_exc() in the worker loop; the task finishes.
                        self.traceback(exc, msg, oom)
                    break
                if sc.get("hang_in_task") and k >= int(sc.get("hang_at_step", 2)):
                    while True:  # a stuck CUDA call: never looks at the stop flag
                        time.sleep(1)
                if sc.get("stall_at_step") and k >= int(sc["stall_at_step"]):
                    while not (self.stop_flag.is_set() and sc.get("stall_honours_stop", True)):
                        time.sleep(0.05)
                # Scripted presses of the Stop / Skip buttons (the user, not the guard).
                if sc.get("stop_at_step") and k == int(sc["stop_at_step"]):
                    self.stop_flag.set()
                if sc.get("skip_at_step") and k == int(sc["skip_at_step"]) and i == 1 and v["skip"] and not v["api"]:
                    self.skip_flag.set()
                if self.stop_flag.is_set():
                    if fam in ("api-0.3", "api-0.4"):
                        # No "Finish task" after a stop (worker.py:1014-1019).
                        ev = [("stopped", {}), ("task_end", {"seconds": None})]
                        if fam == "api-0.3":
                            self.out.say("User stopped", events=ev)
                        else:
                            self.log("WARNING", "[Fooocus] User stopped", ev)
                        ended = True
                    else:
                        self.out.say("User stopped", events=[("stopped", {})])
                    stopped = True
                    break
                if self.skip_flag.is_set():
                    self.skip_flag.clear()
                    self.out.say("User skipped", events=[("skipped", {})])
                    skipped = True
                    break
                if k == 1 and not tty:
                    ev = [] if explicit else [("image_start", {"index": i, "total": n_images})]
                    self.out.say(bar0, "err", ev + [("progress", {"step": 0, "total": steps})])
                time.sleep(step_s)
                self.update(t)
                ev = []
                if k == 1 and tty and not explicit:
                    ev.append(("image_start", {"index": i, "total": n_images}))
                ev.append(("progress", {"step": k, "total": steps}))
                pct = k * 100 // steps
                # tqdm's rate: it/s when faster than one a second, else s/it.
                rate = "%5.2fit/s" % (1 / step_s) if 0 < step_s < 1 else "%5.2fs/it" % step_s
                if step_s <= 0:
                    rate = "99.99it/s"
                bar = "%3d%%|%-10s| %d/%d [00:%02d<00:%02d, %s]" % (
                    pct, "\u2588" * (pct // 10), k, steps, int(k * step_s) % 60, int((steps - k) * step_s) % 60, rate)
                if tty:
                    self.out.redraw(bar, k == steps, ev)
                else:
                    self.out.say(bar, "err", ev)
            if failed or stopped:
                break
            if skipped:
                continue
            secs = round(time.time() - img_start, 2)
            done = [("image_done", {"seconds": secs})]
            if fam == "2.0":
                self.out.say("Diffusion time: %.2f seconds" % secs, events=done)
                self.out.say("Image generated with private log at: " + LOG_HTML)
                continue
            if fam in ("2.4", "2.5", "api-0.5"):
                self.fooocus("Saving image %d/%d to system ..." % (i, n_images))
            if fam == "api-0.4":
                self.log("INFO", "[Fooocus] Generating and saving time: %.2f seconds" % secs, done)
                continue
            if not fam.startswith("api-"):
                self.out.say("Image generated with private log at: " + LOG_HTML)
            self.out.say("Generating and saving time: %.2f seconds" % secs, events=done)
        total = round(time.time() - started, 2)
        if dead:
            return  # the worker thread is gone: no end, and no task will ever run again
        if fam == "2.5" and sc.get("detection_prompt") is not None and not failed and not stopped:
            stopped = self.enhance(t, sc["detection_prompt"], int(sc.get("enhance_steps", 0)), step_s)
        elif fam in ("2.5", "api-0.5") and not (failed and fam == "2.5") and not ended:
            self.out.say("[Enhance] Skipping, preconditions aren't met", events=[activity("enhance")])
        if fam == "api-0.5" and not ended:
            self.log("INFO", "[Task Queue] Finish task, job_id=%d" % t["job"], [("task_end", {"seconds": None})])
        if fam in ("2.5", "api-0.5") and not failed:
            self.out.say("Processing time (total): %.2f seconds" % total)
        if fam in ("api-0.3", "api-0.4") and not ended:
            line = "[Task Queue] Finish task, job_id=%d" % t["job"]
            if fam == "api-0.3":
                self.out.say(line, events=[("task_end", {"seconds": None})])
            else:
                self.log("INFO", line, [("task_end", {"seconds": None})])
        if "yields" not in t and not v["api"] and sc.get("total_time_line", True):
            self.out.say("Total time: %.2f seconds" % total, events=[("task_end", {"seconds": total})])
        with self.task_lock:
            self.task = None
            self.task_done.notify_all()
        if "yields" in t:
            # Started from a tab: `generate_clicked` prints the end (webui.py), see `queue_call`.
            t["yields"].put(("finish", None))

    def update(self, t):
        """The worker's `async_task.yields.append(['preview', ...])`, for a task a tab started."""
        if "yields" in t:
            t["yields"].put(("preview", t.get("step")))

    def enhance(self, t, detection_prompt, steps, step_s):
        """2.5's enhance phase for one image and one Enhance tab with the SAM mask model, whose
        detection prompt is printed verbatim, new lines included (v2.5.5
        modules/async_worker.py:1316-1460). With `steps` (scenario key enhance_steps) it detects
        one box and inpaints it for that many sampling steps (a Stop ends them: `User stopped`),
        else it detects nothing in a blank image. True if stopped."""
        enh = [activity("enhance")]
        self.fooocus("Processing enhance ...", enh)
        self.fooocus("Preparing enhancement 1/1 ...", enh)
        self.out.say('[Enhance] Searching for "%s"' % detection_prompt, events=enh)
        found = 1 if steps > 0 else 0
        self.out.say("[Enhance] %d boxes detected" % found, events=enh)
        self.out.say("[Enhance] %d segments detected in boxes" % found, events=enh)
        self.out.say("[Enhance] %d segments applied to mask" % found, events=enh)
        if not found:
            self.out.say('[Enhance] No "%s" detected, skipping' % detection_prompt, events=enh)
        for k in range(1, steps + 1):
            if self.stop_flag.is_set():
                self.out.say("User stopped", events=[("stopped", {})])
                return True
            time.sleep(step_s)
            t["step"] = k
            self.update(t)
            pct = k * 100 // steps
            # Its bars are the enhance phase's work, not an image's steps.
            self.out.say("%3d%%|%-10s| %d/%d [00:00<00:00, 20.00it/s]" % (pct, "\u2588" * (pct // 10), k, steps),
                         "err", enh)
        if found:
            self.out.say("Enhancement time: %.2f seconds" % (steps * step_s), events=enh)
        self.out.say("Enhancement image time: 0.01 seconds", events=enh)
        return False

    def queue_call(self, sock):
        """Gradio 3.41's queue over a WebSocket (`/queue/join`), as the browser's tab drives
        Fooocus's Generate: the tab sends its session and function, then the call's data (here
        the task's scenario); Fooocus's `generate_clicked` sends an update per preview, the
        last one at the task's finish, prints `Total time` and returns, and the queue then says
        the call completed. A tab that goes away is no longer followed: no `Total time`, no
        completion (gradio queueing.py), while the worker runs the task to its end."""
        def send(obj):
            ws_send_text(sock, json.dumps(obj), masked=False)

        send({"msg": "send_hash"})
        join = json.loads(ws_recv_text(sock) or "null") or {}
        session = join.get("session_hash")
        send({"msg": "estimation", "rank": 0, "queue_size": 1, "avg_event_process_time": None,
              "avg_event_concurrent_process_time": None, "rank_eta": None, "queue_eta": 0})
        send({"msg": "send_data"})
        body = json.loads(ws_recv_text(sock) or "null") or {}
        spec = (body.get("data") or [{}])[0] or {}
        gone = threading.Event()

        def watch():
            while ws_recv_text(sock) is not None:
                pass
            gone.set()

        threading.Thread(target=watch, daemon=True).start()
        with self.queue_lock:
            if gone.is_set():
                return
            send({"msg": "process_starts"})
            started = time.time()
            yields = queue.Queue()
            send({"msg": "process_generating", "output": {"data": ["Waiting for task to start ..."],
                                                         "is_generating": True}, "success": True})
            # `worker.async_tasks.append(task)`: the worker takes it once done with the task it
            # runs (a tab that left may have left one running).
            with self.task_done:
                free = self.task_done.wait_for(lambda: self.task is None, timeout=QUEUE_WAIT_S)
            if not free or not self.start_task(dict(spec, session_hash=session, yields=yields)):
                send({"msg": "process_completed", "output": {"error": "busy"}, "success": False})
                return
            while True:
                flag, step = yields.get()
                if gone.is_set():
                    return  # never resumed: no Total time, no completion
                if flag == "preview" and not yields.empty():
                    continue  # webui.py skips a preview when another item waits
                send({"msg": "process_generating", "output": {"data": [flag, step], "is_generating": True},
                      "success": True})
                if flag == "finish":
                    break
            total = round(time.time() - started, 2)
            if not self.v["api"]:
                self.out.say("Total time: %.2f seconds" % total, events=[("task_end", {"seconds": total})])
            send({"msg": "process_completed", "output": {"data": [], "is_generating": False}, "success": True})

    def request_stop(self, session, skip=False):
        with self.task_lock:
            t = self.task
        if t is None:
            return
        if not self.v["global_stop"] and session != t.get("session_hash"):
            return  # 2.2+: another session's Stop does nothing
        (self.skip_flag if skip else self.stop_flag).set()

    # --- HTTP
    def serve(self):
        sim = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, obj, ctype="application/json"):
                body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b"{}"
                try:
                    return json.loads(raw or b"{}")
                except ValueError:
                    return {}

            def do_GET(self):
                if self.path == "/queue/join" and self.headers.get("Upgrade", "").lower() == "websocket" \
                        and not sim.v["api"]:
                    # http.server would answer in HTTP/1.0: the handshake is written as is.
                    key = self.headers.get("Sec-WebSocket-Key", "")
                    self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                                      % ws_accept_key(key)).encode())
                    self.wfile.flush()
                    self.close_connection = True
                    try:
                        sim.queue_call(self.connection)
                    except OSError:
                        pass  # the tab went away
                elif self.path == "/" and not sim.v["api"]:
                    self.reply(200, b"<!doctype html><title>Fooocus</title><h1>Fooocus (simulated)</h1>", "text/html")
                elif self.path == "/config" and not sim.v["api"]:
                    self.reply(200, sim.gradio_config())
                elif self.path == "/sim/state":
                    t = sim.task
                    self.reply(200, {"ready": sim.ready, "pid": os.getpid(), "version": sim.vname,
                                     "worker_dead": sim.worker_dead,
                                     "task": None if t is None else {k: t.get(k) for k in ("job", "image", "step", "session_hash")}})
                else:
                    self.reply(404, {"detail": "Not Found"})

            def do_POST(self):
                b = self.body()
                if self.path == "/run/predict" and not sim.v["api"]:
                    fn = b.get("fn_index")
                    if fn == STOP_FN or (fn == SKIP_FN and sim.v["skip"]):
                        sim.request_stop(b.get("session_hash"), skip=(fn == SKIP_FN))
                    self.reply(200, {"data": [None], "is_generating": False, "duration": 0.0})
                elif self.path == "/sim/generate":
                    if not sim.ready:
                        self.reply(503, {"detail": "not ready"})
                    elif sim.start_task(b):
                        self.reply(200, {"started": True, "job": sim.job})
                    else:
                        self.reply(409, {"detail": "a task is running"})
                elif self.path == "/v1/generation/stop" and sim.v["api"]:
                    with sim.task_lock:
                        if sim.task is not None:
                            sim.stop_flag.set()
                    self.reply(200, {"msg": "success"})
                elif self.path == "/v1/generation/text-to-image" and sim.v["api"]:
                    ok = sim.start_task(b)
                    self.reply(200 if ok else 409, {"job_id": sim.job} if ok else {"detail": "busy"})
                else:
                    self.reply(404, {"detail": "Not Found"})

        host = self.bind_host()
        explicit = self.args.port
        if explicit is not None:
            # Gradio (networking.py) and uvicorn try only the port they are given.
            ports = [explicit]
        else:
            start = int(os.environ.get("GRADIO_SERVER_PORT", 0) or self.v["port"])
            ports = [start] if self.v["api"] else range(start, start + 100)
        for p in ports:
            try:
                srv = ThreadingHTTPServer((host, p), H)
                break
            except OSError:
                continue
        else:
            self.port_taken(ports[0], ports[-1])
        srv.daemon_threads = True
        self.port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    def port_taken(self, first, last):
        if self.v["api"]:
            self.out.say("ERROR:    [Errno 98] error while attempting to bind on address ('%s', %d): address already in use"
                         % (self.bind_host(), first), "err")
        else:
            msg = PORT_TAKEN.format(p=first) if first == last else PORT_TAKEN.replace("{p}-{p}", "%d-%d" % (first, last))
            self.traceback("OSError", msg, [("port_taken", {"port": first})], frames=[
                ('/content/Fooocus/webui.py", line 1120, in <module>', "shared.gradio_root.launch("),
                ('/usr/local/lib/python3.10/site-packages/gradio/blocks.py", line 1873, in launch', "server_name, server_port, local_url, app, server = networking.start_server("),
                ('/usr/local/lib/python3.10/site-packages/gradio/networking.py", line 168, in start_server', "raise OSError(")])
        sys.stdout.flush()
        os._exit(1)

    def gradio_config(self):
        """/config as the pinned Gradio serves Fooocus's UI: Stop is dependency 0, Skip 1
        (`stop_button.click(...)` is the first event registered); before 2.1.680 neither
        button has an elem_id, only its value."""
        v = self.v
        stop = {"value": "Stop", "visible": False}
        skip = {"value": "Skip", "visible": False}
        if v["stop_elem"]:
            stop["elem_id"] = "stop_button"
            skip["elem_id"] = "skip_button"
        comps = [{"id": 1, "type": "textbox", "props": {"elem_id": "positive_prompt"}},
                 {"id": 2, "type": "button", "props": {"value": "Generate", "elem_id": "generate_button"}},
                 {"id": 3, "type": "button", "props": stop}]
        deps = [{"targets": [3], "trigger": "click", "queue": False}]
        if v["skip"]:
            comps.append({"id": 4, "type": "button", "props": skip})
            deps.append({"targets": [4], "trigger": "click", "queue": False})
        deps.append({"targets": [2], "trigger": "click"})
        return {"version": v["gradio"], "components": comps, "dependencies": deps}


STOP_FN = 0
SKIP_FN = 1
# How long a tab's task waits for the worker to finish the one it runs (a ceiling: a hung task
# never finishes).
QUEUE_WAIT_S = 600


def load_scenario(path, install):
    path = path or os.environ.get("FOOOCUS_SIM_SCENARIO")
    if not path:
        for d in (install, os.getcwd()):
            if d and os.path.exists(os.path.join(d, "sim_scenario.json")):
                path = os.path.join(d, "sim_scenario.json")
                break
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


def sim_flags(ap):
    ap.add_argument("--sim-version")
    ap.add_argument("--sim-install")
    ap.add_argument("--scenario")
    ap.add_argument("--merge-stderr", action="store_true")
    ap.add_argument("--truth")


def upstream_parser(vname, prog):
    """The version's own argument parser, rebuilt from upstream_flags.json (generated from the
    upstream snapshots by upstream.py), plus the simulator's flags."""
    with open(os.path.join(HERE, "upstream_flags.json")) as f:
        spec = json.load(f)[vname]
    ap = argparse.ArgumentParser(prog=prog)
    groups = {}
    for g in spec["exclusive"]:
        grp = ap.add_mutually_exclusive_group()
        for flag in g:
            groups[flag] = grp
    types = {"int": int, "float": float, "str": str, None: None}
    for a in spec["actions"]:
        target = groups.get(a["flags"][0], ap)
        kw = {}
        if a["kind"] == "store_true":
            kw["action"] = "store_true"
        else:
            kw["action"] = a["kind"]
            if a["nargs"] is not None:
                kw["nargs"] = a["nargs"]
            if a["type"]:
                kw["type"] = types[a["type"]]
            if a["const"] is not None and a["nargs"] == "?":
                kw["const"] = a["const"]
            if a["choices"]:
                kw["choices"] = a["choices"]
        target.add_argument(*a["flags"], **kw)
    sim_flags(ap)
    return ap


def run(argv):
    pre = argparse.ArgumentParser(add_help=False)
    sim_flags(pre)
    known, _ = pre.parse_known_args(argv)
    scenario = load_scenario(known.scenario, known.sim_install)
    name = resolve(scenario.get("version") or known.sim_version or "2.5")
    if name not in VERSIONS:
        sys.exit("fooocus_sim: unknown version %r (use one of %s, or %s)"
                 % (name, ", ".join(VERSIONS), ", ".join(ALIASES)))
    api = VERSIONS[name]["api"]
    prog = "main.py" if api else "entry_with_update.py"
    args = upstream_parser(name, prog).parse_args(argv)  # refuses what upstream refuses: exit 2
    args.prog = prog
    args.fooocus_argv = [a for a in _drop_sim_flags(argv)]
    if api:
        args.listen = getattr(args, "host", None)
        args.preset = None
    else:
        args.preset = getattr(args, "preset", None)
        if name in ("2.1.679", "mre-2.0.78.5") and getattr(args, "port", None) == 8188:
            args.port = None  # the ComfyUI default, mapped back to Gradio's own choice
    if getattr(args, "listen", None) == "127.0.0.1" and not api:
        args.listen = None
    sim = Sim(args, scenario, name)
    ok = sim.startup()
    if ok:
        for spec in sim.sc.get("tasks", []):
            time.sleep(float(spec.get("delay", 0.2)))
            if sim.worker_dead:
                break
            while not sim.start_task(spec):
                time.sleep(0.05)
            # Tasks from the scenario run one after another.
            while sim.task is not None and not sim.worker_dead:
                time.sleep(0.05)
    while True:
        time.sleep(3600)


def _drop_sim_flags(argv):
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--sim-version", "--sim-install", "--scenario", "--truth"):
            skip = True
            continue
        if a == "--merge-stderr" or a.split("=")[0] in ("--sim-version", "--sim-install", "--scenario", "--truth"):
            continue
        out.append(a)
    return out


ENTRY = """# Fooocus simulator entry (made by fooocus_sim.py make-install)
import os, sys
here = os.path.dirname(os.path.abspath(__file__))
os.execv(sys.executable, [sys.executable, %r, "--sim-version", %r, "--sim-install", here] + sys.argv[1:])
"""


def make_install(argv):
    ap = argparse.ArgumentParser(prog="fooocus_sim.py make-install")
    ap.add_argument("dir")
    ap.add_argument("--sim-version", default="2.5")
    ap.add_argument("--layout", default="venv", choices=["venv", "portable", "conda", "api"])
    ap.add_argument("--scenario")
    a = ap.parse_args(argv)
    name = resolve(a.sim_version)
    if name not in VERSIONS:
        sys.exit("unknown version %r" % a.sim_version)
    root = os.path.abspath(a.dir)
    fooocus = os.path.join(root, "Fooocus") if a.layout == "portable" else root
    os.makedirs(os.path.join(fooocus, "modules"), exist_ok=True)
    sim = os.path.abspath(__file__)
    api = a.layout == "api" or VERSIONS[name]["api"]
    if api and not VERSIONS[name]["api"]:
        name = ALIASES["api"]
    version = VERSIONS[name]["version"]
    entries = ["main.py"] if api else ["entry_with_update.py", "launch.py"]
    for entry in entries:
        with open(os.path.join(fooocus, entry), "w") as f:
            f.write(ENTRY % (sim, name))
    if api:
        with open(os.path.join(fooocus, "fooocus_api_version.py"), "w") as f:
            f.write("version = '%s'\n" % version)
    else:
        for entry in ("webui.py", "modules/async_worker.py"):
            open(os.path.join(fooocus, entry), "w").close()
        with open(os.path.join(fooocus, "fooocus_version.py"), "w") as f:
            f.write("version = '%s'\n" % version)
    if a.scenario:
        with open(a.scenario) as src, open(os.path.join(fooocus, "sim_scenario.json"), "w") as dst:
            dst.write(src.read())
    if a.layout == "portable":
        os.makedirs(os.path.join(root, "python_embeded"), exist_ok=True)
        link(sys.executable, os.path.join(root, "python_embeded", "python.exe"))
        with open(os.path.join(root, "run.bat"), "w") as f:
            f.write(".\\python_embeded\\python.exe -s Fooocus\\entry_with_update.py\npause\n")
        python = os.path.join(root, "python_embeded", "python.exe")
    elif a.layout == "conda":
        env = os.path.join(os.path.dirname(root), "envs", "fooocus")
        os.makedirs(os.path.join(env, "conda-meta"), exist_ok=True)
        os.makedirs(os.path.join(env, "bin"), exist_ok=True)
        link(sys.executable, os.path.join(env, "bin", "python"))
        python = os.path.join(env, "bin", "python")
    elif os.name == "nt":
        # Windows: symlinks need special rights, and a venv's python.exe is a launcher that
        # reads pyvenv.cfg -- make a real (pip-less) venv. Not exercised by CI (no Windows
        # Python under Wine).
        import subprocess
        env = os.path.join(fooocus, "fooocus_env")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", env], check=True)
        python = os.path.join(env, "Scripts", "python.exe")
    else:
        os.makedirs(os.path.join(fooocus, "fooocus_env", "bin"), exist_ok=True)
        link(sys.executable, os.path.join(fooocus, "fooocus_env", "bin", "python"))
        python = os.path.join(fooocus, "fooocus_env", "bin", "python")
    print(json.dumps({"root": root, "fooocus": fooocus, "python": python, "version": version}))


def link(target, path):
    if os.path.lexists(path):
        os.remove(path)
    os.symlink(target, path)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "make-install":
        make_install(sys.argv[2:])
    else:
        run(sys.argv[1:])
