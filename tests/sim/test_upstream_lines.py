"""The simulator against upstream's own source, version by version (README.md "Fidelity"):

* every line it prints for a version is one of that version's format strings (the string
  literals of its print / logger / progressbar calls, read with `ast` from the files that
  print the console: launch.py, entry_with_update.py, webui.py, modules/async_worker.py, ...),
  or comes from a library upstream calls (Gradio, uvicorn, tqdm, torch.hub, Python's
  tracebacks, and for 2.0.78 and MRE the ComfyUI checkout their snapshots lack);
* its argument parser accepts and refuses what the version's real parser does: upstream's
  parser is built from the snapshot (upstream.py) and both are fed the same command lines.

Needs the upstream snapshots (`../shared/upstream`, or $FOOOCUS_UPSTREAM).
"""
import ast
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fooocus_sim  # noqa: E402
import upstream  # noqa: E402

SIM = os.path.join(HERE, "fooocus_sim.py")

# The files whose prints make the console, per kind of install.
FOOOCUS_FILES = ["entry_with_update.py", "launch.py", "webui.py", "modules/async_worker.py",
                 "modules/private_logger.py", "modules/config.py", "modules/path.py",
                 "backend/headless/fcbh/model_management.py", "ldm_patched/modules/model_management.py"]
API_FILES = ["main.py", "fooocusapi/worker.py"]
LOGGER_CALLS = {"std_info": "INFO", "std_warn": "WARNING", "std_error": "ERROR"}

# Lines printed by the libraries upstream calls, not by upstream itself.
EXTERNAL = [
    # tqdm: sampling bars (integer counts) and download bars (byte units).
    r"\s*\d+%\|.*\| \d+/\d+ \[\d\d:\d\d<(\d\d:\d\d|\?), (\?it/s|\s*[\d.]+(it/s|s/it))\]",
    r"\s*\d+%\|.*\| [\d.]+[kMG]?/[\d.]+[kMG]? \[\d\d:\d\d<\d\d:\d\d, [\d.]+[kMG]?B/s\]",
    # torch.hub.download_url_to_file, and the blank line after it.
    r'Downloading: ".*" to .*', r"",
    # Gradio's launch().
    r"Running on local URL:  http://[\d.]+:\d+",
    r"To create a public link, set `share=True` in `launch\(\)`\.",
    # uvicorn (Fooocus-API).
    r"INFO:     Uvicorn running on http://[\d.]+:\d+ \(Press CTRL\+C to quit\)",
    r"ERROR:    \[Errno 98\] error while attempting to bind on address \('[\d.]+', \d+\): address already in use",
    # Python: threading's excepthook and tracebacks.
    r"Exception in thread Thread-\d+ \((worker|task_schedule_loop)\):",
    r"Traceback \(most recent call last\):",
    r'  File ".*", line \d+, in .*', r"    \S.*",
    r"[\w.]+(Error|Exception): .*",
]
# 2.0.78 and MRE clone ComfyUI at install time; its model_management prints these
# (Fooocus 2.1.679's fcbh copy has the same two prints).
COMFY = [r"Total VRAM [\d]+ MB, total RAM [\d]+ MB", r"Set vram state to: \w+"]

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def literal_regex(node):
    """A regex for the text an expression formats, or None when it is not a string format."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        out = []
        for v in node.values:
            out.append(re.escape(v.value) if isinstance(v, ast.Constant) else ".*")
        return "".join(out)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = literal_regex(node.left), literal_regex(node.right)
        return (left if left is not None else ".*") + (right if right is not None else ".*")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant):
        return re.sub(r"%[-\d.]*[sdfr]", ".*", re.escape(node.left.value).replace("\\%", "%"))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"
            and isinstance(node.func.value, ast.Constant)):
        return re.sub(r"\\\{[^}]*\\\}", ".*", re.escape(node.func.value.value))
    return None


def format_strings(source):
    """(kind, regex) of every print / logger / progressbar call: kind is 'print', a log level,
    or 'progress' (text that the worker prints as `[Fooocus] <text>`)."""
    found = []
    tree = ast.parse(source)
    # `flag = f'App started ...'` then `print(flag)`: a printed variable's formats.
    assigned = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            rx = literal_regex(node.value)
            if rx is not None:
                assigned.setdefault(node.targets[0].id, []).append(rx)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        if name == "print" and len(node.args) == 1 and isinstance(node.args[0], ast.Name):
            found.extend(("print", rx) for rx in assigned.get(node.args[0].id, []))
        elif name == "print" and node.args:
            parts = [literal_regex(a) for a in node.args]
            found.append(("print", " ".join(p if p is not None else ".*" for p in parts)))
        elif name in LOGGER_CALLS and node.args:
            found.append((LOGGER_CALLS[name], literal_regex(node.args[0]) or ".*"))
        elif name == "progressbar" and node.args:
            text = literal_regex(node.args[-1])
            if text is not None:
                found.append(("progress", text))
    # A format that is nothing but placeholders (`print(flag)`, the progressbar's own
    # `[Fooocus] {text}`) would match anything: the calls' texts stand for it.
    return [(k, r) for k, r in found if len(re.sub(r"\.\*|\\.", "", r)) >= 3
            and r not in (r"\[Fooocus\]\ .*",)]


def upstream_formats(version):
    snap = upstream.SNAPSHOTS[version]
    root = upstream.tree(snap)
    api = version.startswith("api-")
    files = API_FILES if api else FOOOCUS_FILES
    plain, logged = [], []
    for rel in files:
        path = os.path.join(root, rel)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            for kind, rx in format_strings(f.read()):
                if kind == "progress":
                    # The worker's progressbar prints `[Fooocus] <text>` (logs it at INFO on
                    # the API 0.4+).
                    rx = r"\[Fooocus\]\ " + rx
                    if api and version != "api-0.3.33":
                        logged.append(("INFO", rx))
                    else:
                        plain.append(rx)
                elif kind == "print":
                    plain.append(rx)
                else:
                    logged.append((kind, rx))
    if version in ("2.0.78", "mre-2.0.78.5"):
        plain += COMFY
    return plain, logged


def logger_prefix(version):
    """The stdout format of Fooocus-API 0.4+'s logger, from its own logger.py."""
    src = upstream.read(upstream.SNAPSHOTS[version], "fooocusapi/utils/logger.py")
    fmt = re.search(r'std_formatter = ColoredFormatter\(\s*fmt="([^"]+)"', src).group(1)
    fmt = re.sub(r"%\((log_color|reset|blue)\)s", "", fmt)  # colours: dropped with the ANSI codes
    rx = re.escape(fmt)
    rx = rx.replace(re.escape("%(asctime)s"), r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
    rx = rx.replace(re.escape("%(levelname)-8s"), r"(?P<level>[A-Z]+)\s*")
    return rx.replace(re.escape("%(message)s"), "(?P<message>.*)")


def sim_output(version, scenario, extra=(), expect_exit=None):
    d = tempfile.mkdtemp()
    scen = os.path.join(d, "s.json")
    with open(scen, "w") as f:
        json.dump(scenario, f)
    p = subprocess.run([sys.executable, SIM, "--sim-version", version, "--scenario", scen,
                        "--merge-stderr", *extra], capture_output=True, text=True, timeout=60)
    if expect_exit is not None:
        assert p.returncode == expect_exit, (version, p.returncode, p.stdout)
    text = ANSI.sub("", p.stdout)
    return [seg for line in text.split("\n") for seg in line.split("\r")]


def task(**kw):
    return dict({"delay": 0.0, "images": 2, "steps": 3, "step_seconds": 0.0}, **kw)


@unittest.skipUnless(upstream.upstream_dir(), "upstream snapshots not found: set FOOOCUS_UPSTREAM")
class UpstreamLines(unittest.TestCase):
    def lines_of(self, version):
        with open(upstream.FLAGS_JSON) as f:
            flags = {flag for a in json.load(f)[version]["actions"] for flag in a["flags"]}
        extra = ["--port", "0"]
        if "--preset" in flags and not version.startswith("api-"):
            extra += ["--preset", "realistic"]
        runs = [
            sim_output(version, {"startup_seconds": 0, "download": True, "exit_after_seconds": 1.5,
                                 "tasks": [task(), task(tty_bars=True, images=1), task(skip_at_step=2),
                                           task(stop_at_step=2), task(download_in_task=True, images=1),
                                           task(oom={"form": "cuda"}, images=1)]}, extra),
            # 2.0.x and MRE lose their worker on the first error: errors get runs of their own.
            sim_output(version, {"startup_seconds": 0, "exit_after_seconds": 1.0,
                                 "tasks": [task(task_error={"exception": "ValueError", "message": "bad size"})]}, extra),
            sim_output(version, {"startup_seconds": 0, "worker_dies": True, "exit_after_seconds": 0.5}, extra),
        ]
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        try:
            runs.append(sim_output(version, {"startup_seconds": 0}, ["--port", str(s.getsockname()[1])], expect_exit=1))
        finally:
            s.close()
        return [line for run in runs for line in run]

    def test_every_line_is_an_upstream_format_string(self):
        for version in fooocus_sim.VERSIONS:
            with self.subTest(version=version):
                plain, logged = upstream_formats(version)
                plain_rx = [re.compile(r) for r in plain + EXTERNAL]
                prefix = re.compile(logger_prefix(version)) if version in ("api-0.4.1.1", "api-0.5.0.1") else None
                # logging.exception(e) logs the exception's own text before its traceback.
                exc_texts = {m for _, m in fooocus_sim.OOM_TEXT.values()} | {"bad size"}
                unmatched = []
                lines = self.lines_of(version)
                self.assertGreater(len(lines), 60, version)
                for line in lines:
                    if prefix and prefix.fullmatch(line):
                        m = prefix.fullmatch(line)
                        ok = m.group("message") in exc_texts or any(
                            lvl == m.group("level") and re.fullmatch(rx, m.group("message")) for lvl, rx in logged)
                    else:
                        ok = line in exc_texts or any(r.fullmatch(line) for r in plain_rx)
                    if not ok:
                        unmatched.append(line)
                self.assertEqual(sorted(set(unmatched)), [], "%s: lines upstream never prints" % version)

    def test_the_arguments_upstream_refuses_are_refused(self):
        with open(upstream.FLAGS_JSON) as f:
            committed = f.read()
        self.assertEqual(committed, upstream.flags_text(upstream.all_flags()),
                         "upstream_flags.json is stale: python3 tests/sim/upstream.py flags")
        argvs = [[], ["--port", "7865"], ["--listen"], ["--listen", "0.0.0.0", "--port", "1"],
                 ["--disable-in-browser"], ["--preset", "anime"], ["--always-low-vram"], ["--lowvram"],
                 ["--always-gpu", "--always-cpu"], ["--highvram", "--lowvram"], ["--always-cpu", "4"],
                 ["--host", "0.0.0.0"], ["--share"], ["--directml"], ["--language", "en"],
                 ["--port", "abc"], ["--no-such-flag"], ["--in-browser"], ["--disable-auto-launch"]]
        for version in fooocus_sim.VERSIONS:
            real = upstream.real_parser(version)
            prog = "main.py" if version.startswith("api-") else "entry_with_update.py"
            sim = fooocus_sim.upstream_parser(version, prog)
            for argv in argvs:
                with self.subTest(version=version, argv=argv):
                    self.assertEqual(accepts(sim, argv), accepts(real, argv))


# The lines the console parser (crates/console, `phase_of` in parse.rs) reads as the start of a
# phase of Fooocus's work, one example each as Fooocus prints it (tests/phases.rs feeds the same).
PHASE_LINES = {
    "model_load": ["model_type EPS", "Requested to load SDXL", "[Fooocus] Loading models ...",
                   "[Fooocus] Loading control models ..."],
    "preparation": ["[Fooocus] Initializing ...", "[Fooocus] Processing prompts ...",
                    "[Fooocus] Preparing Fooocus text #1 ...", "[Fooocus] Encoding base positive #1 ...",
                    "[Fooocus] Encoding positive #1 ...", "[Fooocus] Encoding negative #1 ...",
                    "[Fooocus] VAE encoding ...", "[Fooocus] Image processing ...",
                    "[Fooocus] Preparing task 1/2 ...", "[Fooocus] Processing enhance ..."],
    "decode": ["Requested to load AutoencoderKL"],
    "saving": ["[Fooocus] Saving image 1/2 to system ...", "Image generated with private log at: /o/log.html"],
}
# The files that print them: the worker, the private log, and the backend's model code (2.0.78
# and MRE clone ComfyUI at install time and Fooocus-API 0.3 clones Fooocus: not in the snapshot).
PHASE_FILES = ["modules/async_worker.py", "modules/private_logger.py", "ldm_patched/modules/model_base.py",
               "ldm_patched/modules/model_management.py", "backend/headless/fcbh/model_base.py",
               "backend/headless/fcbh/model_management.py", "fooocusapi/worker.py",
               "repositories/Fooocus/ldm_patched/modules/model_base.py",
               "repositories/Fooocus/ldm_patched/modules/model_management.py"]
_PREP = ["[Fooocus] Initializing ...", "[Fooocus] Processing prompts ...",
         "[Fooocus] Preparing Fooocus text #1 ...", "[Fooocus] VAE encoding ...", "[Fooocus] Image processing ..."]
_PREP21 = _PREP + ["[Fooocus] Encoding positive #1 ...", "[Fooocus] Encoding negative #1 ..."]
_LOAD = ["model_type EPS", "Requested to load SDXL", "[Fooocus] Loading models ...",
         "[Fooocus] Loading control models ..."]
_V20 = {"model_load": ["[Fooocus] Loading models ..."],
        "preparation": _PREP + ["[Fooocus] Encoding base positive #1 ..."],
        "decode": [], "saving": ["Image generated with private log at: /o/log.html"]}
_V21 = {"model_load": _LOAD, "preparation": _PREP21, "decode": ["Requested to load AutoencoderKL"],
        "saving": ["Image generated with private log at: /o/log.html"]}
_V24 = dict(_V21, preparation=_PREP21 + ["[Fooocus] Preparing task 1/2 ..."],
            saving=["[Fooocus] Saving image 1/2 to system ...", "Image generated with private log at: /o/log.html"])
_V25 = dict(_V24, preparation=_V24["preparation"] + ["[Fooocus] Processing enhance ..."])
# Which of PHASE_LINES each version prints (README "Phases" lists them for users).
PHASE_LINES_BY_VERSION = {
    "2.0.78": _V20, "mre-2.0.78.5": _V20,
    "2.1.679": _V21, "2.1.865": _V21, "2.2.1": _V21, "2.3.1": _V21,
    # Fooocus-API 0.4 runs its own worker: no `Preparing task`, no `Saving image`, no private log.
    "2.4.3": _V24, "api-0.4.1.1": dict(_V21, saving=[]),
    "2.5.5": _V25, "mashb1t-2.6.5": _V25, "api-0.5.0.1": _V25,
    "api-0.3.33": {"model_load": ["[Fooocus] Loading models ...", "[Fooocus] Loading control models ..."],
                   "preparation": _PREP21, "decode": [], "saving": []},
}


@unittest.skipUnless(upstream.upstream_dir(), "upstream snapshots not found: set FOOOCUS_UPSTREAM")
class UpstreamPhaseLines(unittest.TestCase):
    def test_each_versions_phase_lines_are_its_own(self):
        """The phase table says exactly which of the parser's phase lines each version prints."""
        for version, snap in upstream.SNAPSHOTS.items():
            with self.subTest(version=version):
                root = upstream.tree(snap)
                formats = []
                files = list(PHASE_FILES)
                worker = os.path.join(root, "fooocusapi/worker.py")
                if os.path.exists(worker):
                    with open(worker, encoding="utf-8") as f:
                        if "from modules.private_logger import log" in f.read():
                            files.append("repositories/Fooocus/modules/private_logger.py")
                for rel in files:
                    path = os.path.join(root, rel)
                    if os.path.exists(path):
                        with open(path, encoding="utf-8") as f:
                            formats += [r"\[Fooocus\]\ " + rx if kind == "progress" else rx
                                        for kind, rx in format_strings(f.read())]
                printed = {phase: [line for line in lines if any(re.fullmatch(rx, line) for rx in formats)]
                           for phase, lines in PHASE_LINES.items()}
                want = {phase: sorted(lines) for phase, lines in PHASE_LINES_BY_VERSION[version].items()}
                self.assertEqual({p: sorted(l) for p, l in printed.items()}, want)


def accepts(parser, argv):
    try:
        with open(os.devnull, "w") as null:
            saved, sys.stderr = sys.stderr, null
            try:
                parser.parse_args(argv)
            finally:
                sys.stderr = saved
        return True
    except SystemExit:
        return False


if __name__ == "__main__":
    unittest.main()
