"""A real Gradio 3.41.2 app wired like Fooocus 2.5's Generate/Stop/Skip: the task is a
per-session gr.State, so only the tab that started a generation can stop it, exactly as in
Fooocus 2.2+. Prints like Fooocus. Accepts Fooocus's launch flags.

Environment: SIM_STEPS (default 400), SIM_STEP_SECONDS (0.05), SIM_IGNORE_STOP (1: a stuck step).
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


class Task:
    def __init__(self):
        self.last_stop = False


def generate(prompt, task):
    task.last_stop = False
    started = time.time()
    print("[Parameters] Adaptive CFG = 7", flush=True)
    print("[Fooocus] Preparing task 1/1 ...", flush=True)
    for k in range(1, STEPS + 1):
        if task.last_stop and not IGNORE:
            print("User stopped", flush=True)
            break
        time.sleep(STEP_S)
        print(" %d%%|#| %d/%d [00:00<00:00,  1.00s/it]" % (k * 100 // STEPS, k, STEPS), file=sys.stderr, flush=True)
        yield "step %d" % k
    else:
        print("Generating and saving time: %.2f seconds" % (time.time() - started), flush=True)
    print("Total time: %.2f seconds" % (time.time() - started), flush=True)
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

demo.queue(concurrency_count=1).launch(server_name=args.listen or "127.0.0.1", server_port=args.port,
                                        prevent_thread_lock=True, show_api=False)
print("App started successful. Use the app with http://127.0.0.1:%d/ or 127.0.0.1:%d" % (args.port, args.port), flush=True)
while True:
    time.sleep(3600)
