#!/usr/bin/env python3
"""The real window through tauri-driver (W3C WebDriver over HTTP, standard library only):
the webview may call the app's own commands, a command outside the capability list is refused,
the CSP forbids remote scripts, and the settings panel saves a limit.

  webdriver.py DASHBOARD_BINARY   (tauri-driver must listen on 127.0.0.1:4444, and the guard,
                                  fooocus-guard --demo, run with the same data folder)
"""
import http.client
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from testkit import Tally  # noqa: E402

# One persistent connection, never `Connection: close` (urllib sends that on every request).
# tauri-driver forwards that header to WebKitWebDriver, which then closes its side after the
# response; but tauri-driver's own client pools the connection anyway (hyper decides from the
# response, which says nothing) and does not retry, so a request sent right after another
# one was, about once in a hundred, written into the closed socket: "Connection reset by
# peer" in the driver, "Remote end closed connection" here. Measured: 67 and 116 back-to-back
# calls before the reset with `close`; 300 of 300, twice, on a kept-alive connection.
conn = None

# Holds the database's write lock until its stdin closes (as a backup tool or a second guard
# would). The guard's reads go on in WAL mode; its writes and whatever waits on them must not
# reach the window.
LOCKER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
c.execute('begin immediate')
c.execute('create table held_by_the_test(x)')
print('locked', flush=True)
sys.stdin.read()
c.execute('rollback')
"""


def call(method, path, body=None):
    global conn
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", 4444, timeout=60)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
    except (ConnectionError, http.client.HTTPException):
        conn.close()
        conn = None  # the next call (the session wait below) connects afresh
        raise
    if r.status >= 400:
        raise RuntimeError(f"{method} {path}: HTTP {r.status}: {data[:300]!r}")
    return json.loads(data or b"{}").get("value")


def open_session(app):
    """A WebDriver session with the dashboard `app` (tauri-driver starts it; it may take a while
    to answer), and a function that runs an async script in its page."""
    caps = {"capabilities": {"alwaysMatch": {"browserName": "wry", "tauri:options": {"application": app}}}}
    deadline = time.time() + 60
    while True:
        try:
            sid = call("POST", "/session", caps)["sessionId"]
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(1)
    return sid, lambda script, *args: call("POST", f"/session/{sid}/execute/async", {"script": script, "args": list(args)})


def main():
    app = sys.argv[1]
    sid, run = open_session(app)
    tally = Tally()
    check = tally.check

    try:
        title = call("GET", f"/session/{sid}/title")
        samples = lambda: int(run("const done = arguments[arguments.length-1]; done(document.querySelector('.dashboard')?.dataset.samples || '0');") or 0)
        a = samples()
        time.sleep(3)
        b = samples()
        check("the graphs move with live samples", b > a, f"{a} -> {b}")
        check("the window is titled Fooocus Guard", title == "Fooocus Guard", title)
        ok = run("const done = arguments[arguments.length-1]; window.__TAURI_INTERNALS__.invoke('get_status').then(s => done(s.state), e => done('ERR ' + e));")
        check("the app's own command answers", ok and not str(ok).startswith("ERR"), ok)
        refused = run("const done = arguments[arguments.length-1]; window.__TAURI_INTERNALS__.invoke('debug_forbidden').then(v => done('ALLOWED ' + v), e => done('REFUSED ' + e));")
        check("a command outside the capability list is refused", str(refused).startswith("REFUSED"), refused)
        refused2 = run("const done = arguments[arguments.length-1]; window.__TAURI_INTERNALS__.invoke('plugin:dialog|open', {options: {}}).then(v => done('ALLOWED'), e => done('REFUSED ' + e));")
        check("another plugin's command is refused", str(refused2).startswith("REFUSED"), refused2)
        # Updates reach the page as take_updates replies (src-tauri/src/updates.rs): Tauri's
        # events, which would run a script per update in the page, are not granted at all.
        listen = run("const done = arguments[arguments.length-1]; window.__TAURI_INTERNALS__.invoke('plugin:event|listen', {event: 'sample', target: {kind: 'Any'}, handler: 0}).then(v => done('ALLOWED'), e => done('REFUSED ' + e));")
        check("the page may not listen to Tauri events", str(listen).startswith("REFUSED"), listen)
        csp = run("""const done = arguments[arguments.length-1];
            const s = document.createElement('script'); s.src = 'https://example.com/x.js';
            let blocked = false;
            document.addEventListener('securitypolicyviolation', () => { blocked = true; done('BLOCKED'); });
            s.onerror = () => setTimeout(() => done(blocked ? 'BLOCKED' : 'ERROR'), 300);
            s.onload = () => done('LOADED');
            document.head.appendChild(s);""")
        check("the CSP forbids remote scripts", csp in ("BLOCKED",), csp)
        # The settings panel: set a short timeout and save it.
        res = run("""const done = arguments[arguments.length-1];
            document.querySelector('button[data-tab=settings]').click();
            setTimeout(() => {
              const i = document.querySelector("input[name='limits.timeout_s']");
              i.value = '15s'; i.dispatchEvent(new Event('input'));
              setTimeout(() => { document.querySelector('#save').click();
                setTimeout(() => done(document.querySelector('#save-result').textContent), 1500); }, 800);
            }, 800);""")
        check("the settings panel saves a new timeout live", "Applied now" in str(res) and "limits" in str(res), res)
        # The demo queues a runaway generation: the new timeout stops it, and the history shows it.
        seen = 0
        deadline = time.time() + 150
        while time.time() < deadline and not seen:
            time.sleep(5)
            seen = int(run("""const done = arguments[arguments.length-1];
                document.querySelector('button[data-tab=history]').click();
                setTimeout(() => done(String(document.querySelectorAll('#generations .chip.timed_out').length)), 1000);""") or 0)
        check("a hanging generation is stopped at the timeout set in the settings and listed in the history", seen > 0)
        limit_rows = run("""const done = arguments[arguments.length-1];
            done(Array.from(document.querySelectorAll('#breaches tbody tr')).map(r => r.innerText).join(' | '));""")
        check("the limit event is in the history", "timeout" in str(limit_rows) and "15 s" in str(limit_rows), limit_rows)
        # Nothing freezes the window: another program holds the history database's write lock
        # while the user clicks through the tabs (each one querying the history). Every click is
        # painted and the guard's status answers.
        db = os.path.join(os.environ["FOOOCUS_GUARD_DATA_DIR"], "history.sqlite3")
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            check("another program holds the history database", locker.stdout.readline().strip() == "locked")
            res = run("""const done = arguments[arguments.length-1];
                const invoke = window.__TAURI_INTERNALS__.invoke;
                (async () => {
                  const steps = [];
                  for (const tab of ['history', 'settings', 'dashboard', 'history', 'settings', 'dashboard']) {
                    const b = document.querySelector(`button[data-tab=${tab}]`);
                    b.click();
                    await new Promise(r => requestAnimationFrame(() => r()));
                    const s = await invoke('get_status');
                    steps.push(`${tab}:${b.classList.contains('active')}:${s.state}`);
                  }
                  done(JSON.stringify({steps}));
                })();""")
            res = json.loads(res)
            steps = res["steps"]
            check("the window answers every click while the database is held",
                  len(steps) == 6 and all(":true:" in s for s in steps), steps)
        finally:
            locker.stdin.close()
            locker.wait(timeout=30)
    finally:
        try:
            call("DELETE", f"/session/{sid}")
        except Exception:
            pass
    sys.exit(tally.summary())


if __name__ == "__main__":
    main()
