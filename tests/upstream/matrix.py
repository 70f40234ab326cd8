"""The supported Fooocus versions and forks, as pinned in ../../../shared/upstream (README there),
and where each one keeps what the guard depends on. One entry per snapshot."""
import os



def _snapshots():
    """FOOOCUS_UPSTREAM, else shared/upstream beside the checkout (CI: ../shared), else beside one of
    its parents (a worktree one level deeper)."""
    if os.environ.get("FOOOCUS_UPSTREAM"):
        return os.environ["FOOOCUS_UPSTREAM"]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    d = os.path.dirname(repo)
    while True:
        if os.path.isdir(os.path.join(d, "shared", "upstream")):
            return os.path.join(d, "shared", "upstream")
        if os.path.dirname(d) == d:
            return os.path.join(os.path.dirname(repo), "shared", "upstream")
        d = os.path.dirname(d)


SNAPSHOTS = _snapshots()

# parser: how run_parser.py runs that version's own argument parser.
#   webui-argparse  2.0.x: the argparse statements at the bottom of webui.py (taken out with ast)
#   fcbh            2.1.30-2.1.825: args_manager.py on backend/headless/fcbh/cli_args.py
#   ldm             2.1.826+: args_manager.py on ldm_patched/modules/args_parser.py
#   mre             MRE: launch.py's parse_args() on ComfyUI's cli_args (stood in, see standin)
#   api             Fooocus-API: main.py's first parse, then fooocusapi/args.py on Fooocus's parser
# standin: the snapshot whose code stands in for what this one clones at install time.
# comfy: 2.0.x and MRE clone ComfyUI at install time; this snapshot's bundled ComfyUI copy stands
#   in for its command line and model_management (standins/sitecustomize.py).
# vram: how that version's parser names the VRAM modes the guard offers (None: it has none).
LDM_VRAM = {m: m.replace("-", "_") for m in (
    "always-gpu", "always-high-vram", "always-normal-vram", "always-low-vram", "always-no-vram", "always-cpu")}
COMFY_VRAM = {
    "always-gpu": "gpu_only",
    "always-high-vram": "highvram",
    "always-normal-vram": "normalvram",
    "always-low-vram": "lowvram",
    "always-no-vram": "novram",
    "always-cpu": "cpu",
}

VERSIONS = [
    dict(name="2.0.78", archive="fooocus-2.0.78", fork="fooocus", parser="webui-argparse", comfy="fooocus-2.1.679", vram=None, preset=False, gradio="3.39.0", stop="global, no elem_id"),
    dict(name="2.1.679", archive="fooocus-2.1.679", fork="fooocus", parser="fcbh", vram=COMFY_VRAM, preset=True, gradio="3.39.0", stop="global, no elem_id"),
    dict(name="2.1.865", archive="fooocus-2.1.865", fork="fooocus", parser="ldm", vram=LDM_VRAM, preset=True, gradio="3.41.2", stop="global"),
    dict(name="2.2.1", archive="fooocus-2.2.1", fork="fooocus", parser="ldm", vram=LDM_VRAM, preset=True, gradio="3.41.2", stop="per session"),
    dict(name="2.3.1", archive="fooocus-2.3.1", fork="fooocus", parser="ldm", vram=LDM_VRAM, preset=True, gradio="3.41.2", stop="per session"),
    dict(name="2.4.3", archive="fooocus-2.4.3", fork="fooocus", parser="ldm", vram=LDM_VRAM, preset=True, gradio="3.41.2", stop="per session"),
    dict(name="2.5.5", archive="fooocus-2.5.5", fork="fooocus", parser="ldm", vram=LDM_VRAM, preset=True, gradio="3.41.2", stop="per session"),
    dict(name="2.6.5 (mashb1t)", archive="mashb1t-fooocus-2.6.5", fork="mashb1t", parser="ldm", vram=LDM_VRAM, preset=True, gradio="3.41.2", stop="per session"),
    dict(name="2.0.78.5 MRE", archive="fooocus-mre-2.0.78.5", fork="mre", parser="mre", standin="fooocus-2.1.679", comfy="fooocus-2.1.679", vram=COMFY_VRAM, preset=False, gradio="3.41.2", stop="global"),
    dict(name="API 0.3.33", archive="fooocus-api-0.3.33", fork="fooocus-api", parser="api", standin="fooocus-2.3.1", vram=LDM_VRAM, preset=True, gradio=None, stop="REST", stop_fn="worker.py:process_top"),
    dict(name="API 0.4.1.1", archive="fooocus-api-0.4.1.1", fork="fooocus-api", parser="api", vram=LDM_VRAM, preset=True, gradio=None, stop="REST"),
    dict(name="API 0.5.0.1", archive="fooocus-api-0.5.0.1", fork="fooocus-api", parser="api", vram=LDM_VRAM, preset=True, gradio=None, stop="REST"),
]

# The launch options (test_argv's case labels) each version's own parser lacks, read from that
# parser: the guard may refuse these before launch, and must accept every other case. test_argv
# confirms each entry on the parser itself (it must refuse the option as the user would spell it).
_VRAM_CASES = {"vram " + m for m in LDM_VRAM}
LACKS = {
    # webui.py's parser: --port, --share, --listen only.
    "2.0.78": _VRAM_CASES | {"preset anime", "extra --directml", "extra --always-low-vram", "extra --disable-image-log",
                             "all at once"},
    # ComfyUI's (fcbh) names for the VRAM modes; no image-log switch yet.
    "2.1.679": {"extra --always-low-vram", "extra --disable-image-log"},
    # ComfyUI's parser plus --port, --share, --listen: no presets.
    "2.0.78.5 MRE": {"preset anime", "extra --always-low-vram", "extra --disable-image-log", "all at once"},
}

# stop_fn: the version's own Stop handler, file:function (what test_ui's stand-in records as the
#   caller of upstream's interrupt): the Stop button's stop_clicked, Fooocus-API's stop endpoint's.
# The number each version prints about itself (what a refusal must name).
for v in VERSIONS:
    v.setdefault("stop_fn", "worker.py:process_stop" if v["fork"] == "fooocus-api" else "webui.py:stop_clicked")
    v["lacks"] = LACKS.get(v["name"], set())
    v.setdefault("standin", None)
    v.setdefault("comfy", None)
    v["number"] = v["name"].split(" ")[-1] if v["fork"] == "fooocus-api" else v["name"].split(" ")[0]


# Checks that fail on today's guard, with the guard behaviour that fails them. A listed check that
# fails prints "xfail" and does not fail the run; one that passes prints "XPASS" and fails it, so
# the entry is removed when the guard is fixed.
# (None today: the guard checks the user's extra flags against the version's parser too.)
EXPECTED_FAIL = {}
