#!/usr/bin/env python3
"""Real Fooocus 2.5.5 for the tray app's screenshots (tests/app/real_screenshots.sh), from the
real suite's own pieces (tests/real/test_real.py's place_tree and EXTRA_ARGS, tests/upstream's
ui_driver): run with the real venv's python (tests/real/setup.sh builds it; it has gradio_client).

  real_fooocus.py launch TMP PORT TIMEOUT_S APP [APP ARGS...]
      a fresh configured copy of the cached 2.5.5 tree in TMP/fooocus, the app's config.toml in
      $FOOOCUS_GUARD_CONFIG_DIR (that tree, the venv's python, always-cpu, PORT, the timeout),
      then exec APP with the environment Fooocus must run with (REQS_FILE, ...): the app
      passes its environment on to Fooocus.
  real_fooocus.py generate URL PROMPT STEPS SIZE
      clicks Generate through Fooocus's own UI at URL (the guard's gateway) with that many steps
      ("Forced Overwrite of Sampling Step") at SIZE ("512*512"), and stays until the click
      chain ends, as a browser tab would.
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "real"))
import test_real  # noqa: E402  (re-executes this script with the venv's python when needed)


def launch(tmp, port, timeout_s, app_argv):
    tree, env = test_real.place_tree(os.path.join(tmp, "fooocus"))
    cfg_dir = os.environ["FOOOCUS_GUARD_CONFIG_DIR"]
    os.makedirs(cfg_dir, exist_ok=True)
    with open(os.path.join(cfg_dir, "config.toml"), "w") as f:
        f.write("install_path = %s\n" % json.dumps(tree))
        f.write("python = %s\n" % json.dumps(test_real.VENV_PY))
        f.write("[launch]\nport = %d\nvram_mode = \"always-cpu\"\nextra_args = %s\n"
                % (int(port), json.dumps(test_real.EXTRA_ARGS)))
        f.write("[restart]\npolicy = \"never\"\n")
        f.write("[limits]\ntimeout_s = %d\ngrace_s = 10\nstartup_timeout_s = 600\n" % int(timeout_s))
    sys.stdout.flush()
    os.execve(app_argv[0], app_argv, env)


def generate(url, prompt, steps, size):
    page = test_real.ui_driver.Page(url, prompt)
    page.set("slider", "Forced Overwrite of Sampling Step", int(steps))
    test_real.aspect(page, size)
    t = page.generate()
    print("clicked Generate at %s: %r, %s steps, %s" % (url, prompt, steps, size), flush=True)
    while t.is_alive():
        t.join(1)
    print("the click chain ended%s" % (": %s" % page.errors if page.errors else ""), flush=True)
    # The tab stays open (a browser's would): the guard's Stop may still come through it.
    time.sleep(3600)


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "launch":
        launch(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif len(sys.argv) == 6 and sys.argv[1] == "generate":
        generate(*sys.argv[2:])
    else:
        sys.exit(__doc__)
