"""Drives a Fooocus web UI the way its page does: from the UI's own /config, the Generate button's
click chain (each `.then` in order, with the values the page holds), and the Stop button's
dependency -- through gradio_client, which speaks the queue websocket like the browser."""
import json
import threading
import urllib.request

from gradio_client import Client


def config(url):
    with urllib.request.urlopen(url.rstrip("/") + "/config", timeout=30) as r:
        return json.load(r)


def button(cfg, value):
    for c in cfg["components"]:
        if c["type"] == "button" and c["props"].get("value") == value:
            return c["id"]
    raise LookupError("no %r button in /config" % value)


def click_chain(cfg, value):
    """Indices of the dependencies a click on the button runs, in order (the click, then each .then)."""
    btn = button(cfg, value)
    deps = cfg["dependencies"]
    order = [next(i for i, d in enumerate(deps) if d["targets"] == [btn] and d["trigger"] == "click")]
    while True:
        nxt = [i for i, d in enumerate(deps) if d.get("trigger_after") == order[-1]]
        if not nxt:
            return order
        order.append(nxt[0])


class Page:
    """One browser tab: one gradio_client session, the values its components hold."""

    def __init__(self, url, prompt):
        self.url = url
        self.cfg = config(url)
        self.comps = {c["id"]: c for c in self.cfg["components"]}
        # What the page holds before the user touches anything, sent as the page sends it (raw:
        # an empty gallery is [], not a folder of files).
        self.values = {i: c["props"].get("value") for i, c in self.comps.items()}
        for c in self.cfg["components"]:
            # The prompt box: the one that takes focus ("Type prompt here." in Fooocus; MRE's own words).
            if c["type"] == "textbox" and (c["props"].get("autofocus") or c["props"].get("placeholder") == "Type prompt here."):
                self.values[c["id"]] = prompt
        self.client = Client(url, verbose=False, serialize=False)
        self.errors = []

    def set(self, kind, label, value, nth=0):
        """What the user puts in the `nth` component of this type with this label (in the
        order the UI creates them), as the page would send it."""
        found = [c["id"] for c in self.cfg["components"] if c["type"] == kind and c["props"].get("label") == label]
        if len(found) <= nth:
            raise LookupError("no %s %r #%d in /config (%d found)" % (kind, label, nth, len(found)))
        self.values[found[nth]] = value

    def call(self, fn_index):
        d = self.cfg["dependencies"][fn_index]
        args = [self.values[i] for i in d["inputs"] if self.comps[i]["type"] != "state"]
        return self.client.submit(*args, fn_index=fn_index).result(timeout=600)

    def generate(self):
        """Clicks Generate: runs its chain in a thread, as the page does. Returns the thread."""
        def run():
            for i in click_chain(self.cfg, "Generate"):
                try:
                    self.call(i)
                except Exception as e:  # noqa: BLE001 -- recorded for the test to report
                    self.errors.append("dependency %d: %r" % (i, e))
                    return
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t
