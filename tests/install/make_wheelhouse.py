"""Writes a wheelhouse of tiny stand-in wheels, one per requirement pin (`name==version`), for
installing Fooocus offline in tests: `pip install --no-index --find-links DIR -r
requirements_versions.txt` then succeeds in seconds, and pip records each package at the pinned
version (so Fooocus's own `requirements_met()` is satisfied at its first start).

The wheels hold metadata only -- no module -- so nothing they install shadows a real package a
test puts on the path (tests/upstream/standins stands in for torch and the other heavy imports).

Usage: make_wheelhouse.py OUT_DIR (REQUIREMENTS_FILE | name==version)...
"""
import os
import re
import sys
import zipfile


def pins(args):
    for a in args:
        if os.path.isfile(a):
            with open(a) as f:
                lines = f.read().splitlines()
        else:
            lines = [a]
        for line in lines:
            line = line.split("#")[0].strip()
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*([A-Za-z0-9_.+\-]+)$", line)
            if m:
                yield m.group(1), m.group(2)
            elif line:
                raise SystemExit("make_wheelhouse: only name==version pins are supported: %r" % line)


def wheel(out, name, version):
    dist = re.sub(r"[-_.]+", "_", name).lower()
    info = "%s-%s.dist-info" % (dist, version)
    files = {
        info + "/METADATA": "Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: test stand-in\n" % (name, version),
        info + "/WHEEL": "Wheel-Version: 1.0\nGenerator: make_wheelhouse\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join("%s,,\n" % p for p in files) + info + "/RECORD,,\n"
    path = os.path.join(out, "%s-%s-py3-none-any.whl" % (dist, version))
    with zipfile.ZipFile(path, "w") as z:
        for p, text in files.items():
            z.writestr(p, text)
        z.writestr(info + "/RECORD", record)
    return path


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, version in pins(sys.argv[2:]):
        wheel(out, name, version)


if __name__ == "__main__":
    main()
