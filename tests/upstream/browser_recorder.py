#!/usr/bin/env python3
"""The user's browser in test_ui.py (BROWSER points here): records each time it is run, with the
URL it was given and its ancestors' pids (to tell a browser started inside Fooocus's tree from
one started outside it), as a JSON line in UPSTREAM_BROWSER_LOG, and opens nothing."""
import json
import os
import sys
import time


def ancestors(pid):
    out = []
    while pid > 1 and len(out) < 64:
        try:
            with open("/proc/%d/stat" % pid) as f:
                # pid (comm) state ppid ...: comm may hold spaces and parentheses
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        out.append(pid)
    return out


with open(os.environ["UPSTREAM_BROWSER_LOG"], "a") as f:
    f.write(json.dumps({"t": time.time(), "argv": sys.argv[1:], "pid": os.getpid(), "ancestors": ancestors(os.getpid())}) + "\n")
