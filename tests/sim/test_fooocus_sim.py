"""The simulator's own tests: it must print what Fooocus prints and misbehave on demand."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

SIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fooocus_sim.py")
sys.path.insert(0, os.path.dirname(os.path.dirname(SIM)))
from testkit import free_port  # noqa: E402
STOP_FN = 0  # `stop_button.click` is the first dependency Fooocus's webui registers


class Run:
    def __init__(self, version="2.5", scenario=None, extra=()):
        self.dir = tempfile.mkdtemp()
        self.port = free_port()
        self.truth = os.path.join(self.dir, "truth.jsonl")
        scen = os.path.join(self.dir, "s.json")
        with open(scen, "w") as f:
            json.dump(dict({"startup_seconds": 0.01}, **(scenario or {})), f)
        self.out = open(os.path.join(self.dir, "out.txt"), "w+")
        self.p = subprocess.Popen([sys.executable, SIM, "--sim-version", version, "--port", str(self.port),
                                   "--scenario", scen, "--merge-stderr", "--truth", self.truth, *extra],
                                  stdout=self.out, stderr=subprocess.STDOUT)

    def text(self):
        with open(self.out.name) as f:
            return f.read()

    def wait_text(self, needle, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.text():
                return self.text()
            if self.p.poll() is not None and needle not in self.text():
                break
            time.sleep(0.05)
        raise AssertionError("%r not printed; output:\n%s" % (needle, self.text()))

    def http(self, method, path, body=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")

    def truth_events(self):
        with open(self.truth) as f:
            return [json.loads(l) for l in f if l.strip()]

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        self.out.close()


class Startup(unittest.TestCase):
    def test_each_version_starts_in_order(self):
        for v, ready in [("2.0", "App started successful"), ("2.1", "App started successful"),
                         ("2.5", "App started successful"), ("mre", "App started successful"), ("api", "Uvicorn running on")]:
            r = Run(v)
            try:
                text = r.wait_text(ready)
                if v != "api":
                    self.assertLess(text.index("Fooocus version:"), text.index("Running on local URL:  http://127.0.0.1:%d" % r.port))
                    self.assertLess(text.index("Running on local URL"), text.index("App started successful"))
                kinds = [e["kind"] for e in r.truth_events()]
                self.assertIn("ready", kinds)
            finally:
                r.close()

    def test_unknown_flag_exits_2(self):
        p = subprocess.run([sys.executable, SIM, "--no-such-flag"], capture_output=True)
        self.assertEqual(p.returncode, 2)

    def test_each_version_refuses_what_its_parser_refuses(self):
        # Fidelity finding H1 / section C: the flags each upstream parser knows.
        for version, argv, code in [
                ("2.0.78", ["--disable-in-browser"], 2), ("2.0.78", ["--preset", "anime"], 2),
                ("2.0.78", ["--listen", "--share"], None),
                ("2.1.679", ["--disable-in-browser"], 2), ("2.1.679", ["--always-low-vram"], 2),
                ("2.1.679", ["--lowvram", "--preset", "anime"], None),
                ("mre", ["--preset", "anime"], 2), ("mre", ["--lowvram", "--listen"], None),
                ("2.1.865", ["--disable-in-browser", "--always-low-vram", "--preset", "anime"], None),
                ("2.5", ["--lowvram"], 2), ("api", ["--host", "127.0.0.1", "--always-low-vram"], None)]:
            p = subprocess.Popen([sys.executable, SIM, "--sim-version", version, "--port", "0", *argv],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                rc = p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                rc = None  # accepted: it is running
            finally:
                p.kill()
                out, err = p.communicate()
            self.assertEqual(rc, code, (version, argv, err))
            if code == 2:
                self.assertIn("unrecognized arguments", err)

    def test_a_taken_port_is_gradios_oserror_and_exit_1(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            p = subprocess.run([sys.executable, SIM, "--sim-version", "2.5", "--port", str(port)],
                               capture_output=True, text=True, timeout=20,
                               env=dict(os.environ, FOOOCUS_SIM_SCENARIO=""))
        finally:
            s.close()
        self.assertEqual(p.returncode, 1)
        self.assertIn("OSError: Cannot find empty port in range: %d-%d. You can specify a different port by "
                      "setting the GRADIO_SERVER_PORT environment variable or passing the `server_port` "
                      "parameter to `launch()`." % (port, port), p.stderr)
        self.assertNotIn("Running on local URL", p.stdout)

    def test_config_as_the_pinned_gradio_serves_it(self):
        for version, gradio, elem in [("2.0.78", "3.39.0", False), ("2.1.679", "3.39.0", False),
                                      ("2.1.865", "3.41.2", True), ("mre", "3.41.2", True)]:
            r = Run(version)
            try:
                r.wait_text("App started successful")
                cfg = r.http("GET", "/config")[1]
                self.assertEqual(cfg["version"], gradio, version)
                stop = [c for c in cfg["components"] if c["props"].get("value") == "Stop"][0]
                self.assertEqual("elem_id" in stop["props"], elem, version)
                self.assertEqual(cfg["dependencies"][STOP_FN]["targets"], [stop["id"]], version)
            finally:
                r.close()


class Tasks(unittest.TestCase):
    def test_task_prints_steps_and_total_time(self):
        r = Run("2.5")
        try:
            r.wait_text("App started successful")
            self.assertEqual(r.http("POST", "/sim/generate", {"images": 2, "steps": 3, "step_seconds": 0.01})[0], 200)
            text = r.wait_text("Total time:")
            self.assertIn("[Fooocus] Preparing task 2/2 ...", text)
            self.assertIn("3/3 [", text)
            kinds = [e["kind"] for e in r.truth_events()]
            # tqdm's first draw (0/3) and three steps, per image.
            self.assertEqual(kinds.count("progress"), 8)
            self.assertEqual(kinds[-1], "task_end")
        finally:
            r.close()

    def test_a_tab_drives_a_task_through_the_queue(self):
        """Gradio's queue as tab.py speaks it: `Total time` comes after the last update and
        before the completion (webui.py `generate_clicked`); a tab that leaves gets neither,
        while the worker finishes the task. The enhance phase samples when told to."""
        tab = os.path.join(os.path.dirname(SIM), "tab.py")
        r = Run("2.5")
        try:
            r.wait_text("App started successful")
            task = {"images": 1, "steps": 2, "step_seconds": 0.01, "detection_prompt": "a cat",
                    "enhance_steps": 3}
            p = subprocess.run([sys.executable, tab, str(r.port), "2", json.dumps(task), "--session", "t1"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            msgs = p.stdout.split()
            self.assertEqual(msgs[:4], ["send_hash", "estimation", "send_data", "process_starts"])
            self.assertEqual(msgs[-1], "process_completed")
            self.assertIn("process_generating", msgs)
            text = r.text()
            self.assertIn("[Enhance] 1 boxes detected", text)
            self.assertIn("3/3 [", text)
            self.assertLess(text.index("Processing time (total)"), text.index("Total time:"))
            kinds = [e["kind"] for e in r.truth_events()]
            self.assertEqual(kinds[-1], "task_end")
            # The tab leaves after its first update: the task runs to its end, no Total time.
            p = subprocess.run([sys.executable, tab, str(r.port), "2",
                                json.dumps(dict(task, steps=20, step_seconds=0.05, enhance_steps=0)),
                                "--leave-after", "1"], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            end = time.time() + 10
            while r.text().count("Processing time (total)") < 2 and time.time() < end:
                time.sleep(0.05)
            self.assertEqual(r.text().count("Processing time (total)"), 2, r.text())
            self.assertEqual(r.text().count("Total time:"), 1)
        finally:
            r.close()

    def test_stop_obeys_the_session_on_25_but_not_on_21(self):
        for version, other_session_stops in [("2.5", False), ("2.1", True)]:
            r = Run(version)
            try:
                r.wait_text("App started successful")
                r.http("POST", "/sim/generate", {"images": 1, "steps": 400, "step_seconds": 0.02, "session_hash": "tab1"})
                r.wait_text("1/400")
                r.http("POST", "/run/predict", {"fn_index": STOP_FN, "data": [None], "session_hash": "another"})
                time.sleep(0.3)
                self.assertEqual("User stopped" in r.text(), other_session_stops, version)
                r.http("POST", "/run/predict", {"fn_index": STOP_FN, "data": [None], "session_hash": "tab1"})
                r.wait_text("Total time:")
                self.assertIn("User stopped", r.text())
            finally:
                r.close()

    def test_api_stop_endpoint(self):
        # 0.4 prints no "Finish task" after a stop (worker.py:1014-1037); 0.5 does.
        for version, after_stop in [("api-0.4.1.1", "[Fooocus] User stopped"), ("api-0.5.0.1", "[Task Queue] Finish task")]:
            r = Run(version)
            try:
                r.wait_text("Uvicorn running on")
                r.http("POST", "/v1/generation/text-to-image", {"images": 1, "steps": 400, "step_seconds": 0.02})
                r.wait_text("1/400")
                r.http("POST", "/v1/generation/stop", {})
                r.wait_text(after_stop)
                kinds = [e["kind"] for e in r.truth_events()]
                self.assertEqual(kinds[-1], "task_end", version)
            finally:
                r.close()

    def test_a_task_error_kills_the_worker_on_20(self):
        r = Run("2.0", {"tasks": [{"delay": 0, "images": 1, "steps": 2, "step_seconds": 0,
                                   "task_error": {"exception": "ValueError", "message": "bad"}}]})
        try:
            r.wait_text("ValueError: bad")
            time.sleep(0.3)
            self.assertIn("Exception in thread Thread-2 (worker):", r.text())
            self.assertNotIn("Total time", r.text())
            self.assertTrue(r.http("GET", "/sim/state")[1]["worker_dead"])
        finally:
            r.close()


class Misbehaviour(unittest.TestCase):
    def test_children_and_a_setsid_grandchild(self):
        d = tempfile.mkdtemp()
        pids = os.path.join(d, "pids")
        r = Run("2.5", {"spawn_children": True, "pids_file": pids})
        try:
            r.wait_text("App started successful")
            end = time.time() + 10
            while time.time() < end and len(open(pids).read().split()) < 3:
                time.sleep(0.05)
            main, *others = [int(p) for p in open(pids).read().split()]
            self.assertEqual(main, r.p.pid)
            sessions = {os.getsid(p) for p in others}
            self.assertEqual(len(sessions), 2, "one of them called setsid()")
        finally:
            for p in [int(x) for x in open(pids).read().split()]:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            r.close()

    def test_ignore_sigterm(self):
        r = Run("2.5", {"ignore_sigterm": True})
        try:
            r.wait_text("App started successful")
            r.p.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            self.assertIsNone(r.p.poll())
        finally:
            r.close()

    def test_sigterm_exits_promptly(self):
        r = Run("2.5")
        r.wait_text("App started successful")
        r.p.send_signal(signal.SIGTERM)
        self.assertEqual(r.p.wait(timeout=5), 0)
        r.close()

    def test_crash_at_startup(self):
        r = Run("2.5", {"crash_at_startup": {"after_seconds": 0.01, "exit_code": 3}})
        self.assertEqual(r.p.wait(timeout=20), 3)
        self.assertIn("Traceback (most recent call last):", r.text())
        r.close()

    def test_dead_worker_keeps_http_but_never_readies(self):
        r = Run("2.5", {"worker_dies": True})
        try:
            r.wait_text("Exception in thread Thread-2 (worker):")
            time.sleep(0.5)
            self.assertNotIn("App started successful", r.text())
            self.assertEqual(r.http("GET", "/sim/state")[0], 200)
        finally:
            r.close()

    def test_allocate_raises_rss(self):
        r = Run("2.5", {"allocate_mib": 200})
        try:
            r.wait_text("App started successful")
            rss = int([l for l in open("/proc/%d/status" % r.p.pid) if l.startswith("VmRSS")][0].split()[1])
            self.assertGreater(rss, 200 * 1024)
        finally:
            r.close()


class MakeInstall(unittest.TestCase):
    def test_layouts(self):
        for layout, marker in [("venv", "fooocus_env/bin/python"), ("portable", "python_embeded/python.exe"), ("api", "fooocus_api_version.py")]:
            d = os.path.join(tempfile.mkdtemp(), "F")
            p = subprocess.run([sys.executable, SIM, "make-install", d, "--layout", layout], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            info = json.loads(p.stdout)
            found = [os.path.join(dp, f) for dp, _, fs in os.walk(d) for f in fs]
            self.assertTrue(any(f.endswith(marker) for f in found), (layout, found))
            self.assertTrue(info["version"])


if __name__ == "__main__":
    unittest.main()
