#!/usr/bin/env python3
"""A Fooocus simulator: prints what Fooocus prints, version by version, serves its HTTP API on
its port, and can be told to misbehave (hang, stall, allocate RAM, burn CPU, spawn children,
ignore SIGTERM, crash, lose its worker thread). The workhorse of Fooocus Guard's tests.

Usage:
  fooocus_sim.py [FOOOCUS FLAGS] [--sim-version V] [--scenario FILE] [--merge-stderr] [--truth FILE]
  fooocus_sim.py make-install DIR [--sim-version V] [--layout venv|portable|conda|api] [--scenario FILE]

Standard library only. See README.md beside this file for the scenario format.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --- versions as data --------------------------------------------------------------------
VERSIONS = {
    #          version string        default port  global stop  explicit "Preparing task"  lcm line  api
    "2.0":     dict(version="2.0.78", port=7860, global_stop=True, preparing=False, marker="init", ready=True),
    "2.1":     dict(version="2.1.865", port=7865, global_stop=True, preparing=False, marker="params", ready=True),
    "2.3":     dict(version="2.3.1", port=7865, global_stop=False, preparing=False, marker="params", ready=True),
    "2.4":     dict(version="2.4.3", port=7865, global_stop=False, preparing=True, marker="lcm", ready=True),
    "2.5":     dict(version="2.5.5", port=7865, global_stop=False, preparing=True, marker="lcm", ready=True),
    "mashb1t": dict(version="2.5.5 (mashb1t)", port=7865, global_stop=False, preparing=True, marker="lcm", ready=True),
    "mre":     dict(version="2.0.78.5 MRE", port=7860, global_stop=True, preparing=False, marker="params", ready=True, mre=True),
    "api":     dict(version="0.4.1.1", port=8888, global_stop=False, preparing=True, marker="api", ready=True, api=True),
}

OOM_TEXT = {
    "cuda": ("torch.cuda.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 8.00 GiB total capacity)"),
    "cuda_error": ("RuntimeError", "CUDA error: out of memory"),
    "cpu": ("RuntimeError", "[enforce fail at alloc_cpu.cpp:83] : DefaultCPUAllocator: not enough memory: you tried to allocate 2147483648 bytes."),
}


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
            self._write("err", text + ("\n" if final else "\r"))

    def record(self, kind, fields):
        if self.truth:
            e = {"line": self.line, "kind": kind}
            e.update(fields)
            self.truth.write(json.dumps(e) + "\n")
            self.truth.flush()


class Sim:
    def __init__(self, args, scenario):
        self.args = args
        self.sc = scenario
        self.vname = scenario.get("version") or args.sim_version or "2.5"
        if self.vname not in VERSIONS:
            sys.exit("fooocus_sim: unknown version %r (use one of %s)" % (self.vname, ", ".join(VERSIONS)))
        self.v = VERSIONS[self.vname]
        self.out = Out(args.merge_stderr, args.truth)
        self.task_lock = threading.Lock()
        self.task = None  # dict of the running task
        self.stop_flag = threading.Event()
        self.skip_flag = threading.Event()
        self.ready = False
        self.port = None
        self.memory = []
        self.job = 0

    # --- printing helpers
    def traceback(self, exception, message, extra_events=()):
        ev = [("error", {"exception": exception, "message": message})] + list(extra_events)
        self.out.say("Traceback (most recent call last):", "err", ev)
        self.out.say('  File "/content/Fooocus/modules/async_worker.py", line 1437, in worker', "err")
        self.out.say("    handler(task)", "err")
        self.out.say('  File "/content/Fooocus/ldm_patched/modules/model_management.py", line 540, in load_models_gpu', "err")
        self.out.say("    raise e", "err")
        self.out.say("%s: %s" % (exception, message) if message else exception, "err")

    def pause(self, s=None):
        time.sleep(self.sc.get("startup_seconds", 0.05) if s is None else s)

    # --- start-up
    def startup(self):
        sc = self.sc
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
        api = self.v.get("api")
        if not api:
            self.out.say("Already up-to-date")
            self.out.say("Update succeeded.")
            self.pause()
            self.out.say("[System ARGV] " + " ".join(sys.argv))
            self.out.say("Python 3.10.9 (main, Dec 15 2022, 10:44:50) [GCC 11.2.0]")
            self.out.say("Fooocus version: " + self.v["version"], events=[("version", {"version": self.v["version"]})])
            if self.vname not in ("2.0", "mre"):
                self.out.say("Loaded preset: /content/Fooocus/presets/%s.json" % (self.args.preset or "default"))
        crash = sc.get("crash_at_startup")
        if crash:
            time.sleep(float(crash.get("after_seconds", 0.1)))
            self.traceback("RuntimeError", "simulated start-up crash")
            sys.stdout.flush()
            os._exit(int(crash.get("exit_code", 1)))
        if sc.get("download"):
            for pct in (10, 50, 100):
                self.out.redraw("%3d%%|%-10s| %.2fG/6.46G [00:01<00:02, 111MB/s]" % (pct, "#" * (pct // 10), 6.46 * pct / 100), pct == 100)
        self.out.say("Total VRAM 8192 MB, total RAM 15916 MB")
        self.out.say("Set vram state to: NORMAL_VRAM")
        self.pause()
        self.serve()
        host = self.display_host()
        url = "http://%s:%d" % (host, self.port)
        if api:
            self.out.say("INFO:     Uvicorn running on %s (Press CTRL+C to quit)" % url, "err",
                         [("listening", {"url": url}), ("ready", {"url": url})])
            self.ready = True
            return True
        self.out.say("Running on local URL:  " + url, events=[("listening", {"url": url})])
        if self.vname not in ("2.0", "2.1", "mre"):
            self.out.say("Started worker with PID %d" % os.getpid())
        if sc.get("worker_dies"):
            self.out.say("Exception in thread Thread-2 (worker):", "err", [("worker_died", {})])
            self.traceback("ImportError", "cannot import name 'xformers' from partially initialized module")
            return False
        self.pause(float(sc.get("ready_delay", 0)) + self.sc.get("startup_seconds", 0.05))
        self.out.say("App started successful. Use the app with %s/ or %s:%d" % (url, host, self.port),
                     events=[("ready", {"url": url})])
        self.ready = True
        return True

    def display_host(self):
        listen = self.args.listen
        return "127.0.0.1" if not listen or listen == "0.0.0.0" else listen

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
        threading.Thread(target=self.run_task, daemon=True).start()
        return True

    def run_task(self):
        t = self.task
        sc = dict(self.sc)
        sc.update(t)
        v = self.v
        n_images = int(sc.get("images", 2))
        steps = int(sc.get("steps", 10))
        step_s = float(sc.get("step_seconds", 0.05))
        tty = bool(sc.get("tty_bars"))
        started = time.time()
        api = v.get("api")
        marker = v["marker"]
        if marker == "init":
            self.out.say("[Fooocus] Initializing ...", events=[("task_start", {})])
        elif marker == "api":
            self.out.say("[Task Queue] Task queue start task, job_id=%d" % t["job"], events=[("task_start", {})])
            self.out.say("[Parameters] Adaptive CFG = 7")
        elif marker == "lcm" and sc.get("lcm", True):
            self.out.say("Enter LCM mode.", events=[("task_start", {})])
            self.out.say("[Parameters] Adaptive CFG = 7")
        else:
            self.out.say("[Parameters] Adaptive CFG = 7", events=[("task_start", {})])
        self.out.say("[Parameters] Sampler = dpmpp_2m_sde_gpu - karras")
        self.out.say("[Parameters] Steps = %d - %d" % (steps, steps))
        self.out.say("[Fooocus] Downloading control models ...") if sc.get("download_in_task") else None
        self.out.say("[Prompt Expansion] %s" % sc.get("prompt", "a lighthouse at dusk, dramatic light, highly detailed"))
        self.out.say("[Fooocus] Processing prompts ...")
        for k in range(1, n_images + 1):
            self.out.say("[Fooocus] Encoding positive #%d ..." % k)
        self.out.say("Preparation time: 0.42 seconds")
        failed = None
        stopped = False
        for i in range(1, n_images + 1):
            t["image"] = i
            if v["preparing"]:
                self.out.say("[Fooocus] Preparing task %d/%d ..." % (i, n_images),
                             events=[("image_start", {"index": i, "total": n_images})])
            img_start = time.time()
            skipped = False
            for k in range(1, steps + 1):
                t["step"] = k
                if i == 1 and k == 1 and (sc.get("oom") or sc.get("task_error")):
                    if sc.get("oom"):
                        exc, msg = OOM_TEXT[sc["oom"].get("form", "cuda")]
                        self.traceback(exc, msg, [("oom", {"message": msg})])
                    else:
                        e = sc["task_error"]
                        exc, msg = e.get("exception", "ValueError"), e.get("message", "simulated task error")
                        self.traceback(exc, msg)
                    failed = msg
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
                if sc.get("skip_at_step") and k == int(sc["skip_at_step"]) and i == 1:
                    self.skip_flag.set()
                if self.stop_flag.is_set():
                    self.out.say("User stopped", events=[("stopped", {})])
                    stopped = True
                    break
                if self.skip_flag.is_set():
                    self.skip_flag.clear()
                    self.out.say("User skipped", events=[("skipped", {})])
                    skipped = True
                    break
                time.sleep(step_s)
                ev = []
                if k == 1 and not v["preparing"]:
                    ev.append(("image_start", {"index": i, "total": n_images}))
                ev.append(("progress", {"step": k, "total": steps}))
                pct = k * 100 // steps
                bar = "%3d%%|%-10s| %d/%d [00:%02d<00:%02d, %5.2fs/it]" % (
                    pct, "\u2588" * (pct // 10), k, steps, int(k * step_s) % 60, int((steps - k) * step_s) % 60, step_s)
                if tty:
                    self.out.redraw(bar, k == steps, ev)
                else:
                    self.out.say(bar, "err", ev)
            if failed or stopped:
                break
            if skipped:
                continue
            if v.get("mre"):
                self.out.say("Diffusion time: %.2f seconds" % (time.time() - img_start))
            self.out.say("[Fooocus] Saving image %d/%d to system ..." % (i, n_images))
            self.out.say("Image generated with private log at: /content/Fooocus/outputs/2026-11-24/log.html")
            secs = round(time.time() - img_start, 2)
            self.out.say("Generating and saving time: %.2f seconds" % secs, events=[("image_done", {"seconds": secs})])
        total = round(time.time() - started, 2)
        if self.vname in ("2.5", "mashb1t"):
            self.out.say("Processing time (total): %.2f seconds" % total)
        if api:
            if failed:
                msg = "job_id=%d, %s" % (t["job"], failed)
                ev = [("error", {"exception": "TaskError", "message": msg})]
                if sc.get("oom"):
                    ev.append(("oom", {"message": msg}))
                self.out.say("[Task Queue] Finish task with error, " + msg, events=ev + [("task_end", {"seconds": None})])
            else:
                self.out.say("[Task Queue] Finish task, job_id=%d" % t["job"], events=[("task_end", {"seconds": None})])
        elif sc.get("total_time_line", True):
            self.out.say("Total time: %.2f seconds" % total, events=[("task_end", {"seconds": total})])
        with self.task_lock:
            self.task = None

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
                if self.path == "/":
                    self.reply(200, b"<!doctype html><title>Fooocus</title><h1>Fooocus (simulated)</h1>", "text/html")
                elif self.path == "/config":
                    self.reply(200, sim.gradio_config())
                elif self.path == "/sim/state":
                    t = sim.task
                    self.reply(200, {"ready": sim.ready, "pid": os.getpid(), "version": sim.vname,
                                     "task": None if t is None else {k: t.get(k) for k in ("job", "image", "step", "session_hash")}})
                else:
                    self.reply(404, {"detail": "Not Found"})

            def do_POST(self):
                b = self.body()
                if self.path == "/run/predict":
                    fn = b.get("fn_index")
                    if fn in (STOP_FN, SKIP_FN):
                        sim.request_stop(b.get("session_hash"), skip=(fn == SKIP_FN))
                    self.reply(200, {"data": [None], "is_generating": False, "duration": 0.0})
                elif self.path == "/sim/generate":
                    if not sim.ready:
                        self.reply(503, {"detail": "not ready"})
                    elif sim.start_task(b):
                        self.reply(200, {"started": True, "job": sim.job})
                    else:
                        self.reply(409, {"detail": "a task is running"})
                elif self.path == "/v1/generation/stop" and sim.v.get("api"):
                    with sim.task_lock:
                        if sim.task is not None:
                            sim.stop_flag.set()
                    self.reply(200, {"msg": "success"})
                elif self.path == "/v1/generation/text-to-image" and sim.v.get("api"):
                    ok = sim.start_task(b)
                    self.reply(200 if ok else 409, {"job_id": sim.job} if ok else {"detail": "busy"})
                else:
                    self.reply(404, {"detail": "Not Found"})

        host = self.args.listen or "127.0.0.1"
        port = self.args.port if self.args.port is not None else int(os.environ.get("GRADIO_SERVER_PORT", 0) or self.v["port"])
        for p in ([0] if port == 0 else range(port, port + 100)):
            try:
                srv = ThreadingHTTPServer((host, p), H)
                break
            except OSError:
                continue
        else:
            sys.exit("fooocus_sim: no free port from %d" % port)
        srv.daemon_threads = True
        self.port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()

    def gradio_config(self):
        comps = [{"id": 1, "type": "textbox", "props": {"elem_id": "positive_prompt"}},
                 {"id": 2, "type": "button", "props": {"elem_id": "generate_button"}},
                 {"id": 3, "type": "button", "props": {"elem_id": "stop_button"}},
                 {"id": 4, "type": "button", "props": {"elem_id": "skip_button"}}]
        deps = [{"targets": [2], "trigger": "click"}] * STOP_FN
        deps = deps + [{"targets": [3], "trigger": "click"}, {"targets": [4], "trigger": "click"}]
        return {"version": "3.41.2", "components": comps, "dependencies": deps}


STOP_FN = 5
SKIP_FN = 6


def load_scenario(args):
    path = args.scenario or os.environ.get("FOOOCUS_SIM_SCENARIO")
    if not path:
        for d in (args.sim_install, os.getcwd()):
            if d and os.path.exists(os.path.join(d, "sim_scenario.json")):
                path = os.path.join(d, "sim_scenario.json")
                break
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


def run(argv):
    ap = argparse.ArgumentParser(prog="entry_with_update.py")
    # Fooocus's own flags (args_manager.py); unknown flags are refused like real argparse does.
    ap.add_argument("--port", type=int)
    ap.add_argument("--listen", nargs="?", const="0.0.0.0")
    ap.add_argument("--preset")
    ap.add_argument("--language")
    ap.add_argument("--theme")
    ap.add_argument("--disable-in-browser", action="store_true")
    ap.add_argument("--share", action="store_true")
    ap.add_argument("--output-path")
    ap.add_argument("--gpu-device-id", type=int)
    ap.add_argument("--host")  # Fooocus-API
    for m in ("always-gpu", "always-high-vram", "always-normal-vram", "always-low-vram", "always-no-vram", "disable-offload-from-vram"):
        ap.add_argument("--" + m, action="store_true")
    ap.add_argument("--always-cpu", nargs="?", const=-1, type=int)
    # The simulator's own.
    ap.add_argument("--sim-version")
    ap.add_argument("--sim-install")
    ap.add_argument("--scenario")
    ap.add_argument("--merge-stderr", action="store_true")
    ap.add_argument("--truth")
    args = ap.parse_args(argv)
    if args.host and not args.listen:
        args.listen = args.host
    sim = Sim(args, load_scenario(args))
    ok = sim.startup()
    if ok:
        for spec in sim.sc.get("tasks", []):
            time.sleep(float(spec.get("delay", 0.2)))
            while not sim.start_task(spec):
                time.sleep(0.05)
            # Tasks from the scenario run one after another.
            while sim.task is not None:
                time.sleep(0.05)
    while True:
        time.sleep(3600)


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
    if a.sim_version not in VERSIONS:
        sys.exit("unknown version %r" % a.sim_version)
    root = os.path.abspath(a.dir)
    fooocus = os.path.join(root, "Fooocus") if a.layout == "portable" else root
    os.makedirs(os.path.join(fooocus, "modules"), exist_ok=True)
    sim = os.path.abspath(__file__)
    version = VERSIONS[a.sim_version]["version"]
    api = a.layout == "api" or a.sim_version == "api"
    entries = ["main.py"] if api else ["entry_with_update.py", "launch.py"]
    for name in entries:
        with open(os.path.join(fooocus, name), "w") as f:
            f.write(ENTRY % (sim, "api" if api else a.sim_version))
    if api:
        with open(os.path.join(fooocus, "fooocus_api_version.py"), "w") as f:
            f.write("version = '%s'\n" % version)
    else:
        for name in ("webui.py", "modules/async_worker.py"):
            open(os.path.join(fooocus, name), "w").close()
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
