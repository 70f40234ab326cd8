#!/usr/bin/env python3
"""RSS of the app: a pid and its descendants (WebKit's processes included), leaving out the
Fooocus tree it supervises (anything inside a fooocus-guard cgroup). Prints MiB."""
import os
import sys


def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            if "fooocus-guard" in f.read():
                return 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


root = int(sys.argv[1])
seen, stack, total = set(), [root], 0
while stack:
    p = stack.pop()
    if p in seen:
        continue
    seen.add(p)
    total += rss_kib(p)
    stack += children(p)
print(f"{total / 1024:.0f}")
