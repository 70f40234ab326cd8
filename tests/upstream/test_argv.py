#!/usr/bin/env python3
"""Every version's own argument parser against the exact argv the guard builds for it.

For each snapshot in matrix.py, unpacked as a venv install, and each launch option the settings
offer (port, listen, preset, VRAM mode, the user's extra flags, auto-update), this asks the guard
for its argv (`fooocus-guard-cli argv --install DIR ... --json`) and runs that version's own parser
on it (run_parser.py). Each option must be accepted by upstream and mean there what the user asked
for, or the guard must refuse it before launch (exit 2) with one line naming the option and the
version.

  python3 tests/upstream/test_argv.py target/debug/fooocus-guard-cli [VERSION-NAME...]
"""
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import trees  # noqa: E402
from matrix import COMFY_VRAM, EXPECTED_FAIL, VERSIONS  # noqa: E402

VRAM_MODES = ["always-gpu", "always-high-vram", "always-normal-vram", "always-low-vram", "always-no-vram", "always-cpu"]


def cases(v):
    """(label, CLI options, extra args, what a refusal must name, the option as a user would spell
    it on the command line: each spelling must be refused by upstream's parser where the version
    lacks it, matrix.LACKS)."""
    out = [
        ("defaults", [], [], [], []),
        ("port 7870", ["--port", "7870"], [], ["port"], [["--port", "7870"]]),
        ("listen 0.0.0.0", ["--listen", "0.0.0.0"], [], ["listen", "0.0.0.0"], [["--listen", "0.0.0.0"]]),
        ("listen 192.168.1.20", ["--listen", "192.168.1.20"], [], ["listen", "192.168.1.20"], [["--listen", "192.168.1.20"]]),
        ("preset anime", ["--preset", "anime"], [], ["preset"], [["--preset", "anime"]]),
    ]
    # A VRAM mode under either family's name (a version without VRAM modes has neither).
    out += [("vram " + m, ["--vram-mode", m], [], ["vram", m], [["--" + m], ["--" + COMFY_VRAM[m].replace("_", "-")]])
            for m in VRAM_MODES]
    # Flags users put in run.bat or the settings' extra arguments (readme: --directml for AMD;
    # --always-low-vram for small cards; --disable-image-log for privacy).
    for extra in (["--directml"], ["--always-low-vram"], ["--disable-image-log"]):
        out.append(("extra " + " ".join(extra), [], extra, extra, [extra]))
    out.append(("all at once", ["--port", "7871", "--listen", "0.0.0.0", "--preset", "realistic", "--vram-mode", "always-low-vram"], [],
                ["port", "listen", "preset", "vram"], [["--port", "7871", "--listen", "0.0.0.0", "--preset", "realistic"]]))
    if v["fork"] != "fooocus-api":
        out.append(("auto-update", ["--auto-update"], [], ["update"], []))
    return out


def guard_argv(cli, tree, opts, extra):
    cmd = [cli, "argv", "--install", tree] + opts + ["--json"]
    if extra:
        cmd += ["--"] + extra
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def upstream_parse(v, trees_by_archive, cmd):
    args = list(cmd["args"])
    if args and args[0] == "-s":  # the portable package's flag to python, not to Fooocus
        args = args[1:]
    standin = trees_by_archive[v["standin"]] if v["standin"] else "-"
    run = [cmd["program"], os.path.join(HERE, "run_parser.py"), v["parser"], cmd["cwd"], standin, "--"] + args
    return subprocess.run(run, capture_output=True, text=True, timeout=60, env=dict(os.environ, **cmd.get("env", {})))


def value_after(args, flag):
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def meaning(v, opts, extra, cmd, parsed):
    """What upstream made of the argv, against what the user asked for: a list of mismatches."""
    bad = []
    asked = {o: opts[i + 1] for i, o in enumerate(opts) if o.startswith("--") and i + 1 < len(opts) and not opts[i + 1].startswith("--")}
    api = v["fork"] == "fooocus-api"
    port_flag = value_after(cmd["args"], "--port")
    if "--port" in asked and str(parsed.get("port")) != asked["--port"]:
        bad.append("asked port %s, upstream parsed %r" % (asked["--port"], parsed.get("port")))
    if port_flag is not None and str(parsed.get("port")) != port_flag:
        bad.append("argv has --port %s, upstream parsed %r" % (port_flag, parsed.get("port")))
    host = parsed.get("host" if api else "listen")
    if "--listen" in asked and host != asked["--listen"]:
        bad.append("asked to listen on %s, upstream listens on %r" % (asked["--listen"], host))
    if "--listen" not in asked and host not in (None, "127.0.0.1") and "--listen" not in extra:
        bad.append("listen not asked, upstream listens on %r" % host)
    if "--preset" in asked and parsed.get("preset") != asked["--preset"]:
        bad.append("asked preset %s, upstream parsed %r" % (asked["--preset"], parsed.get("preset")))
    mode = asked.get("--vram-mode")
    if mode:
        attr = v["vram"][mode] if v["vram"] else None
        got = parsed.get(attr) if attr else None
        if got in (None, False):
            bad.append("asked %s, upstream has %s=%r" % (mode, attr, got))
        others = [a for m, a in (v["vram"] or {}).items() if m != mode and parsed.get(a) not in (None, False)]
        if others:
            bad.append("asked %s, upstream also set %s" % (mode, others))
    if extra and cmd["args"][-len(extra):] != extra:
        bad.append("extra args %s not passed last and verbatim: %s" % (extra, cmd["args"]))
    if v["parser"] == "ldm" and parsed.get("in_browser") is not False:
        bad.append("upstream will open a browser (in_browser=%r): the guard should pass --disable-in-browser" % parsed.get("in_browser"))
    # launch.py unless the user wants Fooocus's self-update (entry_with_update.py).
    entry = "main.py" if api else ("entry_with_update.py" if "--auto-update" in opts else "launch.py")
    if os.path.basename(cmd["args"][0 if cmd["args"][0] != "-s" else 1]) != entry:
        bad.append("expected %s to be run, argv is %s" % (entry, cmd["args"]))
    return bad


def lacks_on_its_parser(cli, v, trees_by_archive, tree, spellings):
    """None when upstream's own parser refuses every spelling of the option, else what it took."""
    base = guard_argv(cli, tree, [], [])
    if base.returncode != 0:
        return "the guard's default argv: %s" % base.stderr.strip()
    cmd = json.loads(base.stdout)
    script = [a for a in cmd["args"] if a != "-s"][0]
    for raw in spellings:
        p = upstream_parse(v, trees_by_archive, dict(cmd, args=[script] + raw))
        if p.returncode == 0:
            return "upstream's parser accepts %s" % " ".join(raw)
    return None


def check_case(cli, v, trees_by_archive, case):
    label, opts, extra, names, spellings = case
    tree = trees_by_archive[v["archive"]]
    g = guard_argv(cli, tree, opts, extra)
    if g.returncode == 2:
        msg = g.stderr.strip()
        # A refusal holds only for an option this version's parser lacks (matrix.LACKS), and the
        # table itself holds only if that parser refuses the option as the user would spell it.
        if label not in v["lacks"]:
            return "FAIL", "refused an option %s's own parser accepts (not in matrix.LACKS): %r" % (v["name"], msg)
        takes = lacks_on_its_parser(cli, v, trees_by_archive, tree, spellings)
        if takes:
            return "FAIL", "matrix.LACKS says %s lacks %r, but %s" % (v["name"], label, takes)
        one_line = msg and "\n" not in msg
        named = any(n.lower() in msg.lower() for n in names) if names else False
        has_version = v["number"] in msg
        if one_line and named and has_version:
            return "refused", msg
        return "FAIL", "refused, but the message must be one line naming the option (%s) and the version (%s): %r" % (
            "/".join(names) or "none asked", v["number"], msg)
    if g.returncode != 0:
        return "FAIL", "fooocus-guard-cli argv exited %d: %s" % (g.returncode, (g.stderr or g.stdout).strip()[-400:])
    cmd = json.loads(g.stdout)
    if os.path.realpath(cmd["cwd"]) != os.path.realpath(tree):
        return "FAIL", "cwd %s is not the install %s" % (cmd["cwd"], tree)
    p = upstream_parse(v, trees_by_archive, cmd)
    if p.returncode != 0:
        err = [l for l in p.stderr.strip().splitlines() if l.strip()]
        return "FAIL", "upstream's parser refused the guard's argv %s: %s" % (cmd["args"][1:], err[-1] if err else p.returncode)
    parsed = json.loads(p.stdout.strip().splitlines()[-1])["args"]
    bad = meaning(v, opts, extra, cmd, parsed)
    if bad:
        return "FAIL", "; ".join(bad)
    return "accepted", " ".join(cmd["args"][1:])


def main():
    cli = os.path.abspath(sys.argv[1])
    only = set(sys.argv[2:])
    dest, trees_by_archive = trees.unpack_all()
    failed = 0
    results = {}
    try:
        todo = [(v, c) for v in VERSIONS if not only or v["name"] in only or v["archive"] in only for c in cases(v)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            outs = list(pool.map(lambda vc: check_case(cli, vc[0], trees_by_archive, vc[1]), todo))
        for (v, c), (status, detail) in zip(todo, outs):
            why = EXPECTED_FAIL.get((v["name"], c[0]))
            if why and status == "FAIL":
                status, detail = "xfail", "%s (expected: %s)" % (detail, why)
            elif why:
                status, detail = "FAIL", "XPASS: now passes; remove it from matrix.EXPECTED_FAIL (%s)" % detail
            results.setdefault(v["name"], []).append(status)
            if status == "FAIL":
                failed += 1
            tag = {"FAIL": "FAIL", "xfail": "xfail"}.get(status, "ok")
            print("%-8s %-16s %-22s %s" % (tag, v["name"], c[0], detail if status != "accepted" else "accepted: " + detail))
    finally:
        trees.remove(dest)
    print()
    for name, sts in results.items():
        print("argv %-16s %2d accepted, %2d refused before launch, %2d expected to fail, %2d failed" % (
            name, sts.count("accepted"), sts.count("refused"), sts.count("xfail"), sts.count("FAIL")))
    xfail = sum(s.count("xfail") for s in results.values())
    print("%d passed, %d expected to fail, %d failed" % (sum(len(s) for s in results.values()) - failed - xfail, xfail, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
