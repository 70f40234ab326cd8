"""Unpacking the upstream snapshots into a temporary folder, shaped as a user's install."""
import os
import shutil
import sys
import tarfile
import tempfile

from matrix import SNAPSHOTS, VERSIONS


def unpack_all(dest=None, python=None):
    """Every snapshot under one temporary folder (stand-ins refer to their siblings), each with a
    fooocus_env/bin/python so the guard detects a venv install. Returns {archive: tree}."""
    dest = dest or tempfile.mkdtemp(prefix="fooocus-upstream-")
    trees = {}
    for v in VERSIONS:
        trees[v["archive"]] = unpack(v["archive"], dest, python)
    return dest, trees


def unpack(archive, dest, python=None):
    path = os.path.join(SNAPSHOTS, archive + ".tar.gz")
    if not os.path.isfile(path):
        raise SystemExit("%s is missing: set FOOOCUS_UPSTREAM to the folder holding the upstream snapshots" % path)
    with tarfile.open(path) as t:
        t.extractall(dest, filter="data")
    tree = os.path.join(dest, archive)  # each archive holds one folder named like itself
    make_env(tree, python or sys.executable)
    placeholders(tree)
    return tree


def placeholders(tree):
    """The snapshots leave images out; the UI of 2.1.8xx+ reads this one's mtime at start-up."""
    styles = os.path.join(tree, "sdxl_styles")
    if os.path.isdir(styles):
        os.makedirs(os.path.join(styles, "samples"), exist_ok=True)
        open(os.path.join(styles, "samples", "fooocus_v2.jpg"), "ab").close()


def make_env(tree, python):
    """fooocus_env/bin/python as a user's venv would have it. A shell script that execs the test
    venv's interpreter: a symlink would lose that venv (Python finds pyvenv.cfg beside argv[0])."""
    py = os.path.join(tree, "fooocus_env", "bin", "python")
    os.makedirs(os.path.dirname(py), exist_ok=True)
    with open(py, "w") as f:
        f.write('#!/bin/sh\nexec %s "$@"\n' % python)
    os.chmod(py, 0o755)


def remove(dest):
    shutil.rmtree(dest, ignore_errors=True)
