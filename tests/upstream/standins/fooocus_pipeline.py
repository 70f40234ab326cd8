"""Stands in for upstream's modules/default_pipeline.py: the model weights and the sampling maths.

Everything around it -- the worker loop in modules/async_worker.py with its prints, its progress
callback, the Stop/Skip handling, saving and logging the image -- is upstream's, calling in here as
it calls the real pipeline. The sampler keeps what a user can observe of the real one (core.ksampler
over a k-diffusion sampler): a tqdm bar on stderr, one step at a time, the interrupt check between
steps (model_management.throw_exception_if_processing_interrupted, upstream's own), then upstream's
callback with (step, x0, x, total_steps, preview). A step takes FOOOCUS_STANDIN_STEP_SECONDS.
"""
import importlib
import os
import time

import numpy as np
from tqdm.auto import trange

import stub

STEP_SECONDS = float(os.environ.get("FOOOCUS_STANDIN_STEP_SECONDS", "0.2"))


def model_management():
    """Upstream's own interrupt flag: where each version keeps ComfyUI's model_management."""
    for name in ("ldm_patched.modules.model_management", "fcbh.model_management", "comfy.model_management"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("no model_management module (ldm_patched, fcbh or comfy) on sys.path")


def process_diffusion(*args, steps=30, width=1024, height=1024, callback=None, **kw):
    mm = model_management()
    for i in trange(steps):
        time.sleep(STEP_SECONDS)  # the UNet and the sampler's maths
        mm.throw_exception_if_processing_interrupted()
        if callback is not None:
            callback(i, None, None, steps, None)
    return [np.zeros((height // 8, width // 8, 3), dtype=np.uint8)]


def final_expansion(prompt, seed):
    """The GPT-2 prompt expansion (a model): a fixed suffix."""
    return prompt + ", stand-in expansion"


expansion = final_expansion  # its name in 2.0.x


def refresh_everything(*a, **k):
    pass


def clear_all_caches(*a, **k):
    pass


def __getattr__(name):
    # Model handles (final_unet, xl_base_patched.vae, ...) and helpers that only touch them.
    return stub.child(stub.StubMeta("default_pipeline", (stub.Stub,), {"_pure": True}), name)()
