#!/usr/bin/env python3
"""Drive the tray icon over D-Bus like a desktop's tray host does (StatusNotifierItem +
com.canonical.dbusmenu), through the gdbus command line tool.

  tray.py items                 print registered items (fails when there is none)
  tray.py menu                  print the menu of the first item: id<TAB>label<TAB>enabled
  tray.py click LABEL           click the menu item with that label
  tray.py status                print the status line (the menu's first item)
"""
import re
import subprocess
import sys


def gdbus(*args):
    p = subprocess.run(["gdbus", "call", "--session", *args], capture_output=True, text=True, timeout=10)
    if p.returncode:
        sys.exit(f"gdbus {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def items():
    out = gdbus("--dest", "org.kde.StatusNotifierWatcher", "--object-path", "/StatusNotifierWatcher",
                "--method", "org.freedesktop.DBus.Properties.Get", "org.kde.StatusNotifierWatcher", "RegisteredStatusNotifierItems")
    return re.findall(r"'([^']+)'", out)


def item():
    found = items()
    if not found:
        sys.exit("no tray item is registered")
    full = found[0]
    # "service/path", or a bare service name (libayatana registers that way): find the object
    # that implements the item.
    if "/" not in full:
        tree = subprocess.run(["gdbus", "introspect", "--session", "--dest", full, "--object-path", "/", "--recurse"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
        node = None
        for line in tree.splitlines():
            m = re.match(r"\s*node (\S+) \{", line)
            if m:
                node = m.group(1)
            elif "interface org.kde.StatusNotifierItem" in line and node:
                return full, node
        return full, "/StatusNotifierItem"
    i = full.index("/")
    return full[:i], full[i:]


def prop(name):
    service, path = item()
    return gdbus("--dest", service, "--object-path", path, "--method", "org.freedesktop.DBus.Properties.Get", "org.kde.StatusNotifierItem", name)


def menu_entries():
    service, _ = item()
    mpath = re.search(r"objectpath '([^']+)'", prop("Menu")).group(1)
    layout = gdbus("--dest", service, "--object-path", mpath, "--method", "com.canonical.dbusmenu.GetLayout", "--", "0", "-1", "@as []")
    entries = []
    for m in re.finditer(r"\((\d+), \{([^{}]*)\}", layout):
        props = m.group(2)
        label = re.search(r"'label': <'([^']*)'>", props)
        enabled = re.search(r"'enabled': <(true|false)>", props)
        if label:
            entries.append((int(m.group(1)), label.group(1).replace("_", ""), enabled is None or enabled.group(1) == "true"))
    return service, mpath, entries


def main():
    cmd = sys.argv[1]
    if cmd == "items":
        # Fails while none is registered: callers wait on it.
        found = items()
        if not found:
            sys.exit("no tray item is registered")
        print("\n".join(found))
    elif cmd == "menu":
        for i, label, en in menu_entries()[2]:
            print(f"{i}\t{label}\t{en}")
    elif cmd == "click":
        service, mpath, entries = menu_entries()
        want = sys.argv[2]
        ids = [i for i, label, _ in entries if label == want]
        if not ids:
            sys.exit(f"no menu item {want!r} in {[l for _, l, _ in entries]}")
        gdbus("--dest", service, "--object-path", mpath, "--method", "com.canonical.dbusmenu.Event",
              str(ids[0]), "clicked", "<int32 0>", "0")
    elif cmd == "status":
        # Linux indicators have no tooltip: the app shows its status as the menu's first item.
        print(menu_entries()[2][0][1])


if __name__ == "__main__":
    main()
