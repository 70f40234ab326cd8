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
    "onnxruntime", "groundingdino", "xformers", "cv2", "scipy", "pygit2",
}
# Upstream modules replaced by a file of ours: the diffusion pipeline (model weights, sampling).
REPLACED = {
    "modules.default_pipeline": os.path.join(HERE, "fooocus_pipeline.py"),
}


class StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
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
