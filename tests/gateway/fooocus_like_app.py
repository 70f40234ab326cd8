"""A real Gradio 3.41.2 app wired like Fooocus 2.5's Generate/Stop/Skip: the task is a
per-session gr.State, so only the tab that started a generation can stop it, exactly as in
Fooocus 2.2+. Prints like Fooocus. Accepts Fooocus's launch flags.

Environment: SIM_STEPS (default 400), SIM_STEP_SECONDS (0.05), SIM_IGNORE_STOP (1: a stuck step),
SIM_QUIET (1: print nothing about tasks, like a fork whose console shows no task lines; only the
queue traffic tells a generation).

Also an "echo" call (fn_index 3): a file in, the same file out, as Fooocus takes an input image
and serves its results (upload through /upload, download through /file=).
"""
import argparse
import os
import sys
import time

import gradio as gr

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=7865)
ap.add_argument("--listen", nargs="?", const="0.0.0.0")
ap.add_argument("--disable-in-browser", action="store_true")
ap.add_argument("--preset")
args, _ = ap.parse_known_args()

STEPS = int(os.environ.get("SIM_STEPS", "400"))
STEP_S = float(os.environ.get("SIM_STEP_SECONDS", "0.05"))
IGNORE = os.environ.get("SIM_IGNORE_STOP") == "1"
QUIET = os.environ.get("SIM_QUIET") == "1"


def say(*a, **k):
    if not QUIET:
        print(*a, **k)


class Task:
    def __init__(self):
        self.last_stop = False


def generate(prompt, task):
    task.last_stop = False
    started = time.time()
    say("[Parameters] Adaptive CFG = 7", flush=True)
    say("[Fooocus] Preparing task 1/1 ...", flush=True)
    for k in range(1, STEPS + 1):
        if task.last_stop and not IGNORE:
            say("User stopped", flush=True)
            break
        time.sleep(STEP_S)
        say(" %d%%|#| %d/%d [00:00<00:00,  1.00s/it]" % (k * 100 // STEPS, k, STEPS), file=sys.stderr, flush=True)
        yield "step %d" % k
    else:
        say("Generating and saving time: %.2f seconds" % (time.time() - started), flush=True)
    say("Total time: %.2f seconds" % (time.time() - started), flush=True)
    yield "done"


def stop_clicked(task):
    task.last_stop = True
    return task


print("Fooocus version: 2.5.5", flush=True)
with gr.Blocks(title="Fooocus") as demo:
    state = gr.State(Task())
    prompt = gr.Textbox(elem_id="positive_prompt")
    out = gr.Textbox(elem_id="progress")
    generate_button = gr.Button("Generate", elem_id="generate_button")
    stop_button = gr.Button("Stop", elem_id="stop_button")
    skip_button = gr.Button("Skip", elem_id="skip_button")
    generate_button.click(generate, [prompt, state], out, api_name="generate")
    stop_button.click(stop_clicked, state, state, queue=False)
    skip_button.click(stop_clicked, state, state, queue=False)
    file_in = gr.File(elem_id="input_file")
    file_out = gr.File(elem_id="output_file")
    echo_button = gr.Button("Echo")
    echo_button.click(lambda f: f.name, file_in, file_out, api_name="echo")

demo.queue(concurrency_count=1).launch(server_name=args.listen or "127.0.0.1", server_port=args.port,
                                        prevent_thread_lock=True, show_api=False)
print("App started successful. Use the app with http://127.0.0.1:%d/ or 127.0.0.1:%d" % (args.port, args.port), flush=True)
while True:
    time.sleep(3600)
