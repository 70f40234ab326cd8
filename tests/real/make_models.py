#!/usr/bin/env python3
"""The models the real suite's Fooocus 2.5.5 loads, made with Fooocus's own classes and random weights.

Run with the real venv's python (setup.sh does): python make_models.py --fooocus TREE --out DIR

DIR/checkpoints/fg-vega-random.safetensors  a Segmind-Vega-shaped SDXL checkpoint, fp16: the UNet
    is ldm_patched's UNetModel with model_channels 320, context_dim 2048, adm_in_channels 2816,
    linear transformers and input transformer depths [0,0,1,1,2,2] -- the keys Fooocus's
    model_detection matches to `Segmind_Vega` (an SDXL subclass, so 2.5.5's
    assert_model_integrity passes); its widths (channel_mult) and output depths, which detection
    does not check, are cut down (channel_mult [1,1,1], no output transformers) to 83 M parameters. CLIP-L and CLIP-G are the tree's own
    SDXLClipModel (from the JSON configs in ldm_patched), the VAE the tree's AutoencoderKL.
DIR/prompt_expansion/fooocus_expansion/  the tree's tokenizer files and word list, and a
    pytorch_model.bin of transformers' GPT2LMHeadModel from the tree's config.json.
DIR/vae_approx/  xlvaeapp.pth and vaeapp_sd15.pth (modules.core.VAEApprox), and
    xl-to-v1_interposer-v4.0.safetensors (extras.vae_interpose.InterposerModel): launch.py fetches
    all three at every start unless they are there.

Weights: torch's normal(0, 0.02) for every matrix and kernel, ones and zeros for norms, so a
forward pass gives finite numbers (ldm_patched's layers skip their own initialisation). Then the
checkpoint is loaded back through ldm_patched's load_checkpoint_guess_config, as Fooocus loads it,
and the detected config must be Segmind_Vega.
"""
import argparse
import json
import os
import shutil
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--fooocus", required=True, help="the unpacked Fooocus 2.5.5 tree")
ap.add_argument("--out", required=True, help="the models folder to fill")
opts = ap.parse_args()
tree, out = os.path.abspath(opts.fooocus), os.path.abspath(opts.out)
# Fooocus's modules write beside themselves when imported (modules.config: config.txt, the model
# and output folders): import them from a scratch copy, so the cached tree stays as unpacked.
import atexit  # noqa: E402
import tempfile  # noqa: E402

scratch = tempfile.mkdtemp(prefix="fg-make-models-")
atexit.register(shutil.rmtree, scratch, True)
work = os.path.join(scratch, "Fooocus")
shutil.copytree(tree, work, ignore=shutil.ignore_patterns(".fg-stamp"))
os.environ["config_path"] = os.path.join(scratch, "config.txt")
os.environ["TMPDIR"] = scratch
sys.argv = [sys.argv[0]]  # args_manager parses sys.argv: Fooocus's defaults
sys.path.insert(0, work)
os.chdir(work)  # modules.config reads ./presets, as it does when Fooocus runs

import torch  # noqa: E402

import ldm_patched.modules.args_parser as args_parser  # noqa: E402

args_parser.args.always_cpu = max(1, os.cpu_count() or 1)  # as --always-cpu: no CUDA probing
torch.manual_seed(20251207)

import ldm_patched.modules.model_management as mm  # noqa: E402,F401
import modules.patch  # noqa: E402

# Fooocus's own patches of ldm_patched (its beta schedule, its CLIP built on transformers), applied
# at its start-up (modules/default_pipeline.py): the classes below are the ones Fooocus runs.
modules.patch.patch_all()
import ldm_patched.modules.sd as sd_mod  # noqa: E402
import ldm_patched.modules.supported_models as supported  # noqa: E402
import ldm_patched.modules.utils as lutils  # noqa: E402
import ldm_patched.modules.model_base as model_base  # noqa: E402
from ldm_patched.ldm.models.autoencoder import AutoencoderKL  # noqa: E402


def randomise(module):
    """Random weights in place: normal(0, 0.02) for weights, ones/zeros for norm layers, zero biases."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            is_norm = any(k in name.lower() for k in ("norm", "ln_")) and p.dim() == 1
            if is_norm and leaf == "weight":
                p.fill_(1.0)
            elif leaf == "bias" or p.dim() == 1:
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
        for name, b in module.named_buffers():
            if b.is_floating_point() and not torch.isfinite(b).all():
                b.zero_()


def count(sd, prefix=""):
    return sum(v.numel() for k, v in sd.items() if k.startswith(prefix))


def mib(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 2**20


t0 = time.time()
os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)

# --- The checkpoint. ---------------------------------------------------------------------------
# What model_detection reads back: model_channels, context_dim, adm_in_channels, linear transformers
# and the input transformer depths (the keys Segmind_Vega.unet_config matches); the rest is ours.
unet_config = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "dtype": torch.float32,
    "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "channel_mult": [1, 1, 1],
    "transformer_depth": [0, 0, 1, 1, 2, 2], "transformer_depth_output": [0, 0, 0, 0, 0, 0, 0, 0, 0],
    "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": 2048,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}
model_config = supported.Segmind_Vega(unet_config)
model_config.set_manual_cast(None)
model = model_config.get_model({}, "model.diffusion_model.", device=torch.device("cpu"))
randomise(model.diffusion_model)
assert isinstance(model, model_base.SDXL), type(model)

clip = sd_mod.CLIP(model_config.clip_target())
randomise(clip.cond_stage_model)
vae = AutoencoderKL(ddconfig={'double_z': True, 'z_channels': 4, 'resolution': 256, 'in_channels': 3, 'out_ch': 3,
                              'ch': 128, 'ch_mult': [1, 2, 4, 4], 'num_res_blocks': 2, 'attn_resolutions': [],
                              'dropout': 0.0}, embed_dim=4)
randomise(vae)

sd = model.state_dict_for_saving(clip.get_sd(), vae.state_dict())
# A real SDXL checkpoint's CLIP-L has no projection (Fooocus's CLIP model carries one, unused).
for k in ("conditioner.embedders.0.logit_scale", "conditioner.embedders.0.text_projection"):
    sd.pop(k, None)
sd = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
ckpt = os.path.join(out, "checkpoints", "fg-vega-random.safetensors")
lutils.save_torch_file(sd, ckpt, metadata={"fooocus-guard": "random weights, tests/real/make_models.py"})
unet_n = count(sd, "model.diffusion_model.")
clip_l_n = count(sd, "conditioner.embedders.0.")
clip_g_n = count(sd, "conditioner.embedders.1.")
vae_n = count(sd, "first_stage_model.")
print("checkpoint %s: UNet %.1f M, CLIP-L %.1f M, CLIP-G %.1f M, VAE %.1f M parameters, %.0f MiB, %.1f s" % (
    ckpt, unet_n / 1e6, clip_l_n / 1e6, clip_g_n / 1e6, vae_n / 1e6, os.path.getsize(ckpt) / 2**20, time.time() - t0))
del sd, model, clip, vae

# Read back as Fooocus reads a checkpoint (modules.core.load_model calls this).
t = time.time()
unet, clip2, vae2, _, _ = sd_mod.load_checkpoint_guess_config(ckpt)
detected = type(unet.model.model_config).__name__
assert detected == "Segmind_Vega" and isinstance(unet.model, model_base.SDXL), detected
assert clip2 is not None and vae2 is not None
print("read back: detected %s (an SDXL: assert_model_integrity passes), %.1f s" % (detected, time.time() - t))
del unet, clip2, vae2

# --- The prompt expansion (GPT-2). ----------------------------------------------------------------
t = time.time()
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

src = os.path.join(tree, "models", "prompt_expansion", "fooocus_expansion")
dst = os.path.join(out, "prompt_expansion", "fooocus_expansion")
shutil.copytree(src, dst, dirs_exist_ok=True)
with open(os.path.join(src, "config.json")) as f:
    gcfg = GPT2Config(**json.load(f))
gpt2 = GPT2LMHeadModel(gcfg)  # transformers' own initialisation: normal(0, initializer_range)
torch.save(gpt2.state_dict(), os.path.join(dst, "pytorch_model.bin"))
print("prompt expansion: GPT-2 %.1f M parameters, %.0f MiB, %.1f s" % (
    sum(p.numel() for p in gpt2.parameters()) / 1e6, mib(dst), time.time() - t))
del gpt2

# --- The VAE approximations launch.py fetches at every start. --------------------------------------
t = time.time()
from modules.core import VAEApprox  # noqa: E402
from extras.vae_interpose import InterposerModel  # noqa: E402

approx = os.path.join(out, "vae_approx")
os.makedirs(approx, exist_ok=True)
for name in ("xlvaeapp.pth", "vaeapp_sd15.pth"):
    m = VAEApprox()
    randomise(m)
    torch.save(m.state_dict(), os.path.join(approx, name))
inter = InterposerModel()
randomise(inter)
lutils.save_torch_file({k: v.contiguous() for k, v in inter.state_dict().items()},
                       os.path.join(approx, "xl-to-v1_interposer-v4.0.safetensors"))
print("vae approximations: %s, %.1f s" % (", ".join(sorted(os.listdir(approx))), time.time() - t))
print("models: %.0f MiB in %.1f s (%s)" % (mib(out), time.time() - t0, out))
