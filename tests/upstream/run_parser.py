#!/usr/bin/env python3
"""Runs one upstream version's OWN argument parser on an argv and prints what it parsed.

  python run_parser.py KIND TREE STANDIN -- ARGV0 ARGS...

KIND says where that version parses its command line (see matrix.py); TREE is the unpacked
snapshot (the guard's cwd); STANDIN is the tree that stands in for code the snapshot clones at
install time ("-" when none is needed). Nothing of the parsers is re-written here: their modules
are imported, or (where the parser sits in a script that cannot be imported without the whole
pipeline) exactly their argparse statements are taken out of the file with `ast` and executed.

Prints one JSON object {"args": {...}} on success. A parser that refuses exits 2 with argparse's own
message on stderr, as upstream would.
"""
import argparse
import ast
import json
import os
import sys
import types


def statements(path, keep, body=None):
    """The top-level statements of `path` (or of `body`) for which keep(stmt, source) is true."""
    with open(path, encoding="utf-8") as f:
        src = f.read()
    tree = ast.parse(src, path)
    nodes = body(tree) if body else tree.body
    picked = [n for n in nodes if keep(n, ast.get_source_segment(src, n) or "")]
    return ast.Module(body=picked, type_ignores=[]), picked


def run_module(mod, path, ns):
    exec(compile(mod, path, "exec"), ns)


def parse_webui_argparse(tree):
    """2.0.x: the parser lives at the bottom of webui.py, which imports the whole pipeline; run
    exactly its `parser = ...`, `parser.add_argument(...)` and `args = parser.parse_args()`."""
    path = os.path.join(tree, "webui.py")
    mod, picked = statements(
        path,
        lambda n, s: s.startswith("parser = argparse.ArgumentParser(")
        or s.startswith("parser.add_argument(")
        or s.startswith("args = parser.parse_args()"),
    )
    # Three options and one parse call in 2.0.78: refuse to pass on a drifted extraction.
    assert len(picked) >= 3 and ast.unparse(picked[-1]).startswith("args = parser.parse_args()"), [
        ast.unparse(p) for p in picked
    ]
    ns = {"argparse": argparse, "__name__": "webui"}
    run_module(mod, path, ns)
    return ns["args"]


def parse_fcbh(tree):
    """2.1.30-2.1.825: args_manager on top of the bundled backend's cli_args (python_hijack.py puts
    backend/headless on sys.path the same way)."""
    sys.path.insert(0, tree)
    sys.path.append(os.path.join(tree, "backend", "headless"))
    import args_manager  # noqa: E402  (upstream's)

    return args_manager.args


def parse_ldm(tree):
    """2.1.826 and later: args_manager on top of ldm_patched/modules/args_parser.py."""
    sys.path.insert(0, tree)
    import args_manager  # noqa: E402  (upstream's)

    return args_manager.args


def parse_mre(tree, standin):
    """Fooocus-MRE: launch.py's own parse_args() and DEFAULT_ARGS. Its parent parser is ComfyUI's
    comfy/cli_args.py, cloned at install time (commit 2381d36e); Fooocus 2.1.679's bundled copy of
    ComfyUI's cli_args (backend/headless/fcbh/cli_args.py) stands in for it."""
    sys.path.append(os.path.join(standin, "backend", "headless"))
    import fcbh.cli_args  # noqa: E402

    comfy = types.ModuleType("comfy")
    comfy.cli_args = fcbh.cli_args
    sys.modules["comfy"] = comfy
    sys.modules["comfy.cli_args"] = fcbh.cli_args
    path = os.path.join(tree, "launch.py")
    mod, picked = statements(
        path,
        lambda n, s: (isinstance(n, ast.FunctionDef) and n.name == "parse_args")
        or s.startswith("DEFAULT_ARGS ="),
    )
    assert len(picked) == 2, [ast.unparse(p) for p in picked]
    ns = {"argparse": argparse, "sys": sys, "__name__": "launch"}
    run_module(mod, path, ns)
    ns["parse_args"]()
    return fcbh.cli_args.args


def parse_api(tree, standin):
    """Fooocus-API: main.py's first, lenient parse (the statements of its __main__ block that
    build and run it), then fooocusapi/args.py, which adds the API's flags to Fooocus's own parser
    (args_manager + ldm_patched) and parses strictly. 0.3.33 clones Fooocus into
    repositories/Fooocus at install time; STANDIN is the Fooocus tree standing in for it."""
    fooocus = os.path.join(tree, "repositories", "Fooocus") if standin == "-" else standin
    sys.path.append(tree)
    sys.path.append(fooocus)
    path = os.path.join(tree, "main.py")

    def main_block(t):
        for n in t.body:
            if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test):
                return n.body
        raise AssertionError("no __main__ block in main.py")

    mod, picked = statements(
        path,
        lambda n, s: "add_base_args" in s or s.startswith("parser =") or "parse_known_args" in s
        or s.startswith("from fooocusapi.args import"),
        body=main_block,
    )
    assert ast.unparse(picked[-1]).startswith("from fooocusapi.args import args"), [
        ast.unparse(p) for p in picked
    ]
    ns = {"argparse": argparse, "sys": sys, "__name__": "__main__"}
    run_module(mod, path, ns)
    return ns["args"]


def main():
    kind, tree, standin = sys.argv[1:4]
    assert sys.argv[4] == "--"
    tree = os.path.abspath(tree)
    standin = standin if standin == "-" else os.path.abspath(standin)
    sys.argv = sys.argv[5:]
    os.chdir(tree)
    if kind == "webui-argparse":
        args = parse_webui_argparse(tree)
    elif kind == "fcbh":
        args = parse_fcbh(tree)
    elif kind == "ldm":
        args = parse_ldm(tree)
    elif kind == "mre":
        args = parse_mre(tree, standin)
    elif kind == "api":
        args = parse_api(tree, standin)
    else:
        raise SystemExit("unknown parser kind %r" % kind)
    out = {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v)) for k, v in vars(args).items()}
    print(json.dumps({"args": out}))


if __name__ == "__main__":
    main()
