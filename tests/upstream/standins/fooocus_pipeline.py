"""Stands in for upstream's modules/default_pipeline.py: the model weights and the sampling maths.

Everything around it -- the worker loop in modules/async_worker.py with its prints, its progress
callback, the Stop/Skip handling, saving and logging the image -- is upstream's, calling in here as
it calls the real pipeline. The sampler keeps what a user can observe of the real one (core.ksampler
over a k-diffusion sampler): a tqdm bar on stderr, one step at a time, the interrupt check between
steps (model_management.throw_exception_if_processing_interrupted, upstream's own), then upstream's
callback with (step, x0, x, total_steps, preview). A step takes FOOOCUS_STANDIN_STEP_SECONDS, or
the number in the file FOOOCUS_STANDIN_STEP_FILE names (read at each image, so a test can make one
generation slow and the next fast). The file may hold several numbers: the n-th diffusion since it
was written takes the n-th (the last one after that), so one generation's image can be fast and its
enhance phase slow.
"""
import importlib
import json
import os
import sys
import time

import numpy as np
from tqdm.auto import trange

import stub



# Diffusions run since the step file was last written, by that version of it (mtime, size).
_diffusions = {}


def step_seconds():
    path = os.environ.get("FOOOCUS_STANDIN_STEP_FILE")
    if path and os.path.exists(path):
        st = os.stat(path)
        with open(path) as f:
            values = [float(x) for x in f.read().split()]
        key = (st.st_mtime_ns, st.st_size)
        n = _diffusions.get(key, 0)
        _diffusions.clear()
        _diffusions[key] = n + 1
        return values[min(n, len(values) - 1)]
    return float(os.environ.get("FOOOCUS_STANDIN_STEP_SECONDS", "0.2"))


def _loading_models():
    """Importing the real pipeline loads the checkpoints: seconds to minutes, so the UI's launch()
    has long set local_url when the worker prints its ready line (`App started successful`).
    Importing this stand-in takes no time; it waits for launch() instead, so the worker keeps the
    order it has on a real machine (fooocus-fidelity L8 is the rare case where it does not)."""
    import sys

    if "webui" not in sys.modules:  # Fooocus-API: no web UI to wait for
        return
    import shared  # upstream's

    end = time.time() + 120
    while getattr(getattr(shared, "gradio_root", None), "local_url", None) is None and time.time() < end:
        time.sleep(0.05)


def model_management():
    """Upstream's own interrupt flag: where each version keeps ComfyUI's model_management."""
    for name in ("ldm_patched.modules.model_management", "fcbh.model_management", "comfy.model_management"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("no model_management module (ldm_patched, fcbh or comfy) on sys.path")


def record_stops():
    """Who asks upstream to stop: each call of its model_management.interrupt_current_processing
    (the flag behind every version's Stop) is a JSON line in FOOOCUS_STANDIN_STOP_LOG, with the
    file and function that called it -- the version's own Stop handler (webui.py's stop_clicked,
    Fooocus-API's process_stop) or anything else -- and, where that handler was given the tab's
    task (2.2+: per session), whether that task is the one running. The call itself is upstream's."""
    log = os.environ.get("FOOOCUS_STANDIN_STOP_LOG")
    mm = model_management()
    real = mm.interrupt_current_processing
    if not log or getattr(real, "standin_recorded", False):
        return

    def interrupt_current_processing(*a, **k):
        caller = sys._getframe(1)
        rec = {"t": time.time(), "by": "%s:%s" % (os.path.basename(caller.f_code.co_filename), caller.f_code.co_name)}
        task = caller.f_locals.get("currentTask")
        if task is not None:
            rec["task_processing"] = bool(getattr(task, "processing", False))
        with open(log, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return real(*a, **k)

    interrupt_current_processing.standin_recorded = True
    mm.interrupt_current_processing = interrupt_current_processing


def process_diffusion(*args, steps=30, width=1024, height=1024, callback=None, **kw):
    record_stops()
    mm = model_management()
    seconds = step_seconds()
    for i in trange(steps):
        time.sleep(seconds)  # the UNet and the sampler's maths
        mm.throw_exception_if_processing_interrupted()
        if callback is not None:
            callback(i, None, None, steps, None)
    return [np.zeros((height // 8, width // 8, 3), dtype=np.uint8)]


def final_expansion(prompt, seed):
    """The GPT-2 prompt expansion (a model): a fixed suffix."""
    return prompt + ", stand-in expansion"


expansion = final_expansion  # its name in 2.0.x


# No refiner loaded (the UI's "None"): Fooocus skips its refiner branches on `is not None`.
xl_refiner = None
final_refiner_unet = None
final_refiner_vae = None


def is_base_sdxl():  # MRE: the loaded checkpoint is SDXL
    return True


def apply_prompt_strength(c, c_refiner, strength):  # MRE: conditioning maths
    return c, c_refiner


def refresh_everything(*a, **k):
    pass


def clear_all_caches(*a, **k):
    pass


class _Vae:
    """A VAE whose latent has a shape: 2.5's Vary reads `B, C, H, W` from it (apply_vary)."""

    def encode(self, pixels):
        return np.zeros((1, 4, 128, 128), dtype=np.float32)


def get_candidate_vae(steps, switch, denoise=1.0, refiner_swap_method="joint"):  # 2.1.8xx+
    return _Vae(), None


_loading_models()


def __getattr__(name):
    # Model handles (final_unet, xl_base_patched.vae, ...) and helpers that only touch them.
    return stub.child(stub.StubMeta("default_pipeline", (stub.Stub,), {"_pure": True}), name)()
