"""Helpers the Python test suites share (import with the tests/ folder on sys.path).

Kept to what is the same in every suite: a free loopback port, the guard's JSON events file,
whether a pid is still alive, polling, and the "ok / FAIL" tally of the script-style suites.
"""
import json
import socket
import time


def free_port():
    """A loopback port nobody holds right now (the caller binds it soon after)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def events(path):
    """The guard's events file, one JSON object a line. A missing file is no events yet; a
    line cut short (the guard killed mid-write) is skipped."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out


def alive(pid):
    """True while `pid` runs (a zombie counts as gone: it only waits to be reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait(pred, timeout, interval=0.05):
    """Poll `pred` until it returns something true (returned) or `timeout` seconds pass (None)."""
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return None


class Tally:
    """Checks of a script-style suite: prints "ok" or "FAIL" a line, counts both."""

    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print("ok  ", name, flush=True)
        else:
            self.failed += 1
            print("FAIL", name, detail, flush=True)
        return bool(cond)

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0
