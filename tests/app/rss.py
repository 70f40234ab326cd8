#!/usr/bin/env python3
"""RSS of the app: a pid and its descendants (WebKit's processes included), leaving out the
Fooocus tree it supervises. Prints MiB. The walk is footprint.py's (which also gives PSS)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from footprint import processes, total  # noqa: E402

print(f"{total(processes(int(sys.argv[1])))[1]:.0f}")
