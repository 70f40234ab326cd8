#!/usr/bin/env python3
"""Sleep and wake (issue 25) with the real upstream Fooocus 2.5.5 UI and a real browser.

Fooocus 2.5.5 runs from its snapshot under the guard as test_ui.py runs it (stand-ins for torch
and the diffusion, a fast stand-in step), behind the gateway with a token and
`--sleep-after 8s`. Headless Chromium, driven over its DevTools protocol (standard library and
the venv's `websockets`), then checks what the user sees:

- a tab opened before the sleep (the token once in its address, then the gateway's cookie) sits
  idle until Fooocus sleeps: the tree is gone, the gateway still answers;
- a tab in another browser profile with a wrong token is refused and wakes nothing;
- the old tab clicks Generate: its queue call is held while Fooocus wakes, and the generation
  runs to completion after the wake (`woke` by a visit, `generation_finished` completed);
- idle again, Fooocus sleeps again; a fresh tab gets the guard's waking page and lands in
  Fooocus once it is ready (the page's own script reloads it).

It prints the figures for the README: the plain start's start-up, each wake's time to ready,
and the waking page's first byte.

  tests/upstream/.venv-gradio-3.41/bin/python tests/upstream/test_sleep.py target/debug/fooocus-guard-cli
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from websockets.sync.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from testkit import Tally, alive, events, free_port, wait  # noqa: E402
import trees  # noqa: E402
from matrix import VERSIONS  # noqa: E402

TOKEN = "sleep-ui-token-25"
SLEEP_AFTER = "8s"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As the UI tests start it (/work/.library/env/machines/rust.md): nothing but loopback traffic.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Guard:
    """fooocus-guard-cli running the unpacked 2.5.5 behind the gateway, with a token and sleep."""

    def __init__(self, cli):
        v = next(x for x in VERSIONS if x["name"] == "2.5.5")
        self.tmp = tempfile.mkdtemp(prefix="fooocus-upstream-sleep-")
        venv = os.path.join(HERE, ".venv-gradio-3.41", "bin", "python")
        self.tree = trees.unpack(v["archive"], self.tmp, venv)
        self.ev = os.path.join(self.tmp, "events.jsonl")
        self.out = os.path.join(self.tmp, "out.txt")
        step = os.path.join(self.tmp, "step_seconds")
        with open(step, "w") as f:
            f.write("0.02")  # a generation of 2 images x 30 steps: about 1.5 s
        cfg = os.path.join(self.tmp, "config.toml")
        with open(cfg, "w") as f:
            f.write('[gateway]\ntoken = "%s"\n' % TOKEN)
        open(self.ev, "w").close()
        os.makedirs(os.path.join(self.tmp, "t"))
        env = dict(
            os.environ,
            PYTHONPATH=os.path.join(HERE, "standins"),
            FOOOCUS_STANDIN_STEP_FILE=step,
            REQS_FILE=os.path.join(HERE, "no-requirements.txt"),
            GRADIO_ANALYTICS_ENABLED="False",
            BROWSER="true",
            TMPDIR=os.path.join(self.tmp, "t"),
            FOOOCUS_GUARD_DATA_DIR=os.path.join(self.tmp, "data"),
        )
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen(
            [cli, "run", "--install", self.tree, "--port", str(self.port), "--config", cfg, "--events", self.ev,
             "--sleep-after", SLEEP_AFTER],
            env=env, stdout=open(self.out, "w"), stderr=subprocess.STDOUT)

    def events(self):
        return events(self.ev)

    def wait(self, pred, timeout, what):
        e = wait(lambda: next((e for e in self.events() if pred(e)), None) or self.proc.poll() is not None, timeout, 0.1)
        if not isinstance(e, dict):
            raise AssertionError("%s: not seen within %ds; events: %s\n--- output (tail):\n%s" % (
                what, timeout, [x["event"] for x in self.events()], self.output()[-2500:]))
        return e

    def nth(self, name, n, timeout):
        """The n-th (from 1) event of this name."""
        self.wait(lambda e: e["event"] == name and self.count(name) >= n, timeout, "%s #%d" % (name, n))
        return [e for e in self.events() if e["event"] == name][n - 1]

    def count(self, name):
        return sum(1 for e in self.events() if e["event"] == name)

    def output(self):
        with open(self.out, errors="replace") as f:
            return f.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if os.environ.get("UPSTREAM_KEEP"):
            print("     kept", self.tmp)
        else:
            trees.remove(self.tmp)


class Page:
    """One tab, over its DevTools WebSocket."""

    def __init__(self, devtools, target_id):
        self.ws = connect("ws://%s/devtools/page/%s" % (devtools, target_id), max_size=1 << 24, open_timeout=30)
        self.n = 0

    def call(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv(timeout=60))
            if m.get("id") == self.n:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return r.get("result", {}).get("value")

    def until(self, expression, timeout, what):
        """Polls `expression` in the page (a navigation may replace the document meanwhile)."""
        end = time.time() + timeout
        last = None
        while time.time() < end:
            try:
                v = self.js(expression)
                if v:
                    return v
            except RuntimeError as e:  # the context went away with a reload: ask the next one
                last = e
            time.sleep(0.2)
        raise AssertionError("%s: not within %ds (page title %r, last error %s)" % (
            what, timeout, self.js("document.title"), last))

    def close(self):
        self.ws.close()


class Browser:
    """Headless Chromium with an empty profile, driven over the DevTools protocol."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="fooocus-sleep-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, "--user-data-dir=" + self.profile, "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        ok = wait(lambda: os.path.exists(port_file) and open(port_file).read().split("\n")[0].strip().isdigit(), 60, 0.1)
        if not ok:
            raise AssertionError("Chromium did not open its DevTools port")
        self.devtools = "127.0.0.1:%s" % open(port_file).read().split("\n")[0].strip()
        version = self.http("/json/version")
        self.browser = Page.__new__(Page)
        self.browser.ws = connect(version["webSocketDebuggerUrl"], max_size=1 << 24, open_timeout=30)
        self.browser.n = 0

    def http(self, path):
        host, port = self.devtools.split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=30)
        c.request("GET", path)
        return json.loads(c.getresponse().read())

    def tab(self, url, context=None):
        params = {"url": url}
        if context:
            params["browserContextId"] = context
        target = self.browser.call("Target.createTarget", **params)["targetId"]
        return Page(self.devtools, target)

    def new_profile(self):
        """A context with its own cookies (another user's browser)."""
        return self.browser.call("Target.createBrowserContext")["browserContextId"]

    def close(self):
        try:
            self.browser.call("Browser.close")
        except Exception:  # noqa: BLE001 -- closing anyway
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


FOOOCUS_UI = "!!document.querySelector('#generate_button') && document.title !== '' && !document.body.innerText.includes('Waking Fooocus up')"


def first_byte(url, path):
    """Seconds to the first byte of a browser's navigation (HTML accepted, the token's cookie
    already set), and the status."""
    host, port = url.replace("http://", "").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    t = time.perf_counter()
    c.request("GET", path, headers={"Accept": "text/html,application/xhtml+xml", "Authorization": "Bearer " + TOKEN,
                                    "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
    r = c.getresponse()
    took = time.perf_counter() - t
    body = r.read().decode(errors="replace")
    return took, r.status, body


def main():
    cli = os.path.abspath(sys.argv[1])
    t = Tally()
    g = Guard(cli)
    b = None
    try:
        t0 = time.time()
        ready = g.wait(lambda e: e["event"] == "ready", 300, "ready")
        started = g.wait(lambda e: e["event"] == "started", 5, "started")
        t.check("Fooocus 2.5.5 ready behind the gateway in %.1f s (its start-up: %.1f s)" % (
            time.time() - t0, ready["startup_s"]), ready["url"] == g.url, ready)
        b = Browser()
        # The tab opened before the sleep: the token once, then the gateway's cookie.
        old = b.tab(g.url + "/?token=" + TOKEN)
        old.until(FOOOCUS_UI, 120, "Fooocus's UI in the first tab")

        asleep = g.nth("asleep", 1, 120)
        mib = lambda k: "%.0f MiB" % (asleep[k] / 2**20) if asleep.get(k) is not None else "-"  # noqa: E731
        t.check("idle for %s with a tab open, Fooocus sleeps (idle %.1f s; its tree held %s; the machine's RAM in use "
                "%s before, %s after)" % (SLEEP_AFTER, asleep["idle_s"], mib("held_ram_bytes"), mib("ram_before_bytes"),
                                          mib("ram_after_bytes")), asleep["idle_s"] >= 8, asleep)
        gone = wait(lambda: not alive(started["pid"]), 30)
        t.check("its process is gone", bool(gone), started["pid"])

        # Another browser with a wrong token: refused, and nothing wakes.
        stranger = b.tab(g.url + "/?token=wrong-token-0000", b.new_profile())
        text = stranger.until("document.readyState === 'complete' && document.body.innerText", 30, "the refusal")
        starts = g.count("started")
        time.sleep(2)  # the window in which a wake would have launched Fooocus (under 0.1 s here)
        t.check("a wrong token is refused while asleep and wakes nothing",
                g.count("started") == starts and "Waking" not in text and not stranger.js(
                    "!!document.querySelector('#generate_button')"), text[:200])
        stranger.close()

        # The old tab clicks Generate: its queue call waits for the wake, then the generation runs.
        before = g.count("generation_finished")
        clicked = time.time()
        old.js("document.querySelector('#generate_button').click(); true")
        woke = g.nth("woke", 1, 300)
        t.check("the click wakes Fooocus (by a visit, ready %.1f s after the wake)" % woke["ready_s"],
                woke["by"] == "visit", woke)
        fin = g.wait(lambda e: e["event"] == "generation_finished" and g.count("generation_finished") > before, 120,
                     "the old tab's generation")
        t.check("the old tab's generation runs after the wake and completes (%.1f s after the click)" % (
            time.time() - clicked), fin["outcome"] == "completed" and fin["images_done"] >= 1, fin)
        old.until("document.querySelectorAll('#final_gallery img, .gallery img, img').length > 0", 60,
                  "the images in the old tab")

        # Idle again: asleep again; a fresh tab gets the waking page, then Fooocus.
        g.nth("asleep", 2, 120)
        took, status, body = first_byte(g.url, "/")
        t.check("a browser's navigation gets the waking page at once (first byte %.1f ms)" % (took * 1000),
                status == 200 and "Waking Fooocus up" in body, (status, body[:300]))
        fresh = b.tab(g.url + "/")
        waking = fresh.until("document.readyState === 'complete' && document.body.innerText.includes('Waking Fooocus up')"
                             " && document.body.innerText", 60, "the waking page in the fresh tab")
        t.check("the fresh tab shows the waking page: %r" % " ".join(waking.split())[:80], "about" in waking, waking)
        # The README's screenshot of it (artifacts/, as the UI tests save theirs).
        shots = os.path.join(os.path.dirname(HERE), "..", "artifacts", "upstream")
        os.makedirs(shots, exist_ok=True)
        png = fresh.call("Page.captureScreenshot", format="png")["data"]
        with open(os.path.join(shots, "waking-page.png"), "wb") as f:
            f.write(__import__("base64").b64decode(png))
        fresh.until(FOOOCUS_UI, 300, "Fooocus in the fresh tab once awake")
        woke2 = g.nth("woke", 2, 60)
        t.check("the fresh tab lands in Fooocus once it is ready (ready %.1f s after the wake; the plain start: %.1f s)"
                % (woke2["ready_s"], ready["startup_s"]), woke2["by"] == "visit", woke2)
        t.check("no crash, restart or give-up on the way",
                not any(e["event"] in ("restarting", "gave_up", "wake_failed") for e in g.events()),
                [e["event"] for e in g.events()])
        fresh.close()
        old.close()
    except AssertionError as e:
        t.check("sleep and wake with the real UI", False, str(e))
    finally:
        if os.environ.get("UPSTREAM_SHOW_EVENTS"):
            for e in g.events():
                print("     ", json.dumps(e)[:300])
        if b:
            b.close()
        g.close()
    sys.exit(t.summary())


if __name__ == "__main__":
    main()
