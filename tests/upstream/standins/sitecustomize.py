"""Loaded by Python at start-up (this folder is on PYTHONPATH): puts the stand-ins of README.md's
matrix in front of the real imports. Only the heavy parts are stood in -- torch and the libraries
that exist to run models (stub.py), and the diffusion itself (fooocus_pipeline.py, which replaces
modules/default_pipeline.py). Everything else Fooocus imports is its own code and real packages."""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# Libraries whose only job in Fooocus is tensor maths or model loading.
HEAVY = {
    "torch", "torchvision", "torchaudio", "torchsde", "transformers", "safetensors", "accelerate",
    "pytorch_lightning", "lightning_fabric", "timm", "einops", "kornia", "segment_anything", "rembg",
    "onnxruntime", "groundingdino", "supervision", "xformers", "cv2", "scipy", "skimage", "pygit2",
}
# Upstream modules replaced by a file of ours: the diffusion pipeline (model weights, sampling).
REPLACED = {
    "modules.default_pipeline": os.path.join(HERE, "fooocus_pipeline.py"),
}


# 2.0.x and MRE clone ComfyUI into repositories/ at install time (not in the snapshots). When
# FOOOCUS_STANDIN_COMFY names the folder holding Fooocus 2.1.679's bundled copy of ComfyUI (fcbh:
# ComfyUI of a few weeks later, renamed), its command line and its model_management -- where the
# interrupt flag behind Stop lives -- stand in for ComfyUI's; the rest of ComfyUI (models and
# sampling, which Fooocus 2.0 patches by name) is stood in like torch.
COMFY = os.environ.get("FOOOCUS_STANDIN_COMFY")
ALIASES = {"comfy.model_management": "fcbh.model_management", "comfy.cli_args": "fcbh.cli_args"}


class Alias(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass


class StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if COMFY and name in ALIASES:
            if COMFY not in sys.path:
                sys.path.append(COMFY)
            return importlib.machinery.ModuleSpec(name, Alias(ALIASES[name]))
        if COMFY and top in ("comfy", "comfy_extras"):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        if name in REPLACED:
            return importlib.util.spec_from_file_location(name, REPLACED[name])
        if name.split(".")[0] in HEAVY:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        import stub

        return stub.module(spec.name)

    def exec_module(self, module):
        pass


if os.environ.get("FOOOCUS_STANDINS", "1") != "0":
    sys.meta_path.insert(0, StandIns())
