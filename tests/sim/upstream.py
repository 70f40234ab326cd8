"""Upstream Fooocus, for the simulator's own tests: unpack a pinned snapshot
(`../shared/upstream/*.tar.gz`, README there) and build the real argument parser of that
version by executing upstream's own files (only the modules they import are stood in).

    python3 tests/sim/upstream.py flags   # rewrite upstream_flags.json from the snapshots

Standard library only. Never imported by the simulator itself.
"""
import argparse
import atexit
import importlib.util
import json
import os
import shutil
import sys
import tarfile
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS_JSON = os.path.join(HERE, "upstream_flags.json")

# Simulator version -> snapshot archive (and, for forks whose parser comes from a tree the
# snapshot lacks, the snapshot standing in for it; see README.md "Arguments").
SNAPSHOTS = {
    "2.0.78": "fooocus-2.0.78",
    "2.1.679": "fooocus-2.1.679",
    "2.1.865": "fooocus-2.1.865",
    "2.2.1": "fooocus-2.2.1",
    "2.3.1": "fooocus-2.3.1",
    "2.4.3": "fooocus-2.4.3",
    "2.5.5": "fooocus-2.5.5",
    "mashb1t-2.6.5": "mashb1t-fooocus-2.6.5",
    "mre-2.0.78.5": "fooocus-mre-2.0.78.5",
    "api-0.3.33": "fooocus-api-0.3.33",
    "api-0.4.1.1": "fooocus-api-0.4.1.1",
    "api-0.5.0.1": "fooocus-api-0.5.0.1",
}
# MRE extends the ComfyUI `cli_args` of a commit it clones at install time (not in its
# snapshot): Fooocus 2.1.679's `fcbh` (ComfyUI renamed, autumn 2023) stands in for it.
# Fooocus-API 0.3.33 likewise clones Fooocus: 2.1.865's parser stands in.
STAND_IN = {"mre-2.0.78.5": "fooocus-2.1.679", "api-0.3.33": "fooocus-2.1.865"}


def upstream_dir():
    for d in (os.environ.get("FOOOCUS_UPSTREAM"),
              os.path.join(HERE, "..", "..", "..", "shared", "upstream"),
              "/work/shared/upstream"):
        if d and os.path.isdir(d):
            return os.path.abspath(d)
    return None


_trees = {}


def tree(name):
    """The unpacked snapshot `name` (cached for the process)."""
    if name not in _trees:
        base = upstream_dir()
        if base is None:
            raise FileNotFoundError("upstream snapshots not found (set FOOOCUS_UPSTREAM)")
        dest = tempfile.mkdtemp(prefix="fooocus-upstream-")
        atexit.register(shutil.rmtree, dest, True)
        with tarfile.open(os.path.join(base, name + ".tar.gz")) as t:
            t.extractall(dest)
        inner = os.path.join(dest, name)
        _trees[name] = inner if os.path.isdir(inner) else dest
    return _trees[name]


def read(name, path):
    with open(os.path.join(tree(name), path), encoding="utf-8") as f:
        return f.read()


# --- the real parsers ---------------------------------------------------------------------

def _package(dotted):
    """Empty packages for `dotted` and its parents, linked as attributes."""
    parts = dotted.split(".")
    for i in range(1, len(parts) + 1):
        n = ".".join(parts[:i])
        sys.modules[n] = types.ModuleType(n)
        if i > 1:
            setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], sys.modules[n])
    return sys.modules[dotted]


def _load(path, modname):
    spec = importlib.util.spec_from_file_location(modname, path)
    m = importlib.util.module_from_spec(spec)
    sys.modules[modname] = m
    pkg, _, leaf = modname.rpartition(".")
    if pkg:
        setattr(sys.modules[pkg], leaf, m)
    spec.loader.exec_module(m)
    return m


def _backend(root, pkg, rel):
    """Upstream's backend parser module (`fcbh.cli_args` / `ldm_patched...args_parser`)."""
    for n in list(sys.modules):
        if n.split(".")[0] in ("fcbh", "ldm_patched", "comfy", "args_manager"):
            del sys.modules[n]
    p = _package(pkg)
    options = types.ModuleType(pkg + ".options")
    options.args_parsing = False  # their own module-level parse_args([]) then sees no argv
    options.enable_args_parsing = lambda enable=True: None
    sys.modules[pkg + ".options"] = options
    p.options = options
    return _load(os.path.join(root, rel), pkg + "." + os.path.basename(rel)[:-3])


def _until_parse(src, marker=".parse_args("):
    """The source of a module up to (not including) its line that parses sys.argv."""
    out = []
    for line in src.splitlines():
        if marker in line and not line.lstrip().startswith("#"):
            break
        out.append(line)
    return "\n".join(out)


def _exec(src, name):
    g = {"__name__": name, "__file__": name}
    exec(compile(src, name, "exec"), g)
    return g


def _fooocus_parser(snap):
    root = tree(snap)
    if os.path.exists(os.path.join(root, "ldm_patched", "modules", "args_parser.py")):
        m = _backend(root, "ldm_patched.modules", "ldm_patched/modules/args_parser.py")
    else:
        m = _backend(os.path.join(root, "backend", "headless"), "fcbh", "fcbh/cli_args.py")
    _exec(_until_parse(read(snap, "args_manager.py")), "args_manager.py")
    return m.parser


def real_parser(version):
    """The argparse parser the real `version` parses its command line with."""
    snap = SNAPSHOTS[version]
    if version == "2.0.78":
        # webui.py's own parser (its last lines, before `parse_args`).
        src = read(snap, "webui.py")
        start = src.index("parser = argparse.ArgumentParser(")
        return _exec("import argparse\n" + _until_parse(src[start:]), "webui.py")["parser"]
    if version == "mre-2.0.78.5":
        cli = _backend(os.path.join(tree(STAND_IN[version]), "backend", "headless"), "fcbh",
                       "fcbh/cli_args.py")
        comfy = _package("comfy")
        comfy.cli_args = cli
        sys.modules["comfy.cli_args"] = cli
        src = read(snap, "launch.py")
        body = src[src.index("def parse_args():"):]
        body = body[:body.index("\ndef ", 1)]
        g = _exec("import argparse, sys\nDEFAULT_ARGS = []\n" + body, "launch.py")
        saved = sys.argv
        sys.argv = ["launch.py"]
        try:
            # Run upstream's function with a parser that records itself instead of parsing.
            made = []
            real = argparse.ArgumentParser.parse_args
            argparse.ArgumentParser.parse_args = lambda self, *a, **k: made.append(self)
            try:
                g["parse_args"]()
            finally:
                argparse.ArgumentParser.parse_args = real
        finally:
            sys.argv = saved
        return made[0]
    if version.startswith("api-"):
        fooocus = STAND_IN.get(version)
        if fooocus is None:
            fooocus_root = os.path.join(tree(snap), "repositories", "Fooocus")
            m = _backend(fooocus_root, "ldm_patched.modules", "ldm_patched/modules/args_parser.py")
            with open(os.path.join(fooocus_root, "args_manager.py"), encoding="utf-8") as f:
                am = f.read()
        else:
            m = _backend(tree(fooocus), "ldm_patched.modules", "ldm_patched/modules/args_parser.py")
            am = read(fooocus, "args_manager.py")
        base = _exec(read(snap, "fooocusapi/base_args.py"), "base_args.py")
        base["add_base_args"](m.parser, False)
        _exec(_until_parse(am), "args_manager.py")
        return m.parser
    return _fooocus_parser(snap)


def describe(parser):
    """What the simulator needs to rebuild a parser that accepts and refuses the same argv."""
    actions = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction) or not a.option_strings:
            continue
        kind = {argparse._StoreTrueAction: "store_true", argparse._AppendAction: "append",
                argparse._StoreAction: "store"}.get(type(a), "store")
        t = a.type if a.type in (int, float, str) else None
        actions.append({
            "flags": list(a.option_strings),
            "kind": kind,
            "nargs": a.nargs if kind != "store_true" else None,
            "type": t.__name__ if t else None,
            "const": a.const if isinstance(a.const, (int, float, str)) else None,
            "choices": [str(c) for c in a.choices] if a.choices else None,
        })
    exclusive = [[a.option_strings[0] for a in g._group_actions]
                 for g in parser._mutually_exclusive_groups]
    return {"actions": actions, "exclusive": exclusive}


def flags_text(flags):
    """upstream_flags.json as committed: one version per line."""
    return "{\n" + ",\n".join("%s: %s" % (json.dumps(v), json.dumps(flags[v], sort_keys=True, separators=(",", ":")))
                              for v in sorted(flags)) + "\n}\n"


def all_flags():
    return {v: describe(real_parser(v)) for v in SNAPSHOTS}


if __name__ == "__main__" and sys.argv[1:] == ["flags"]:
    with open(FLAGS_JSON, "w") as f:
        f.write(flags_text(all_flags()))
    print("wrote", FLAGS_JSON)
