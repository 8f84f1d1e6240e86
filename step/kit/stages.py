"""The stage table: every stage's flag, module, tag and the label of what it makes, in pipeline order.

It is the one owner of a stage's identity. `run_sample.py` builds its `--<flag>_pass` flags from it and
runs the chosen stages in this order; each stage module takes its log tag from it (`stage_tag`); map
folders record the flag of the stage that made them (step.kit.stamps), evaluations copy that flag into
their metrics JSON, and the stage table (step.report) labels and orders its rows by it.
"""
from __future__ import annotations

from dataclasses import dataclass

# scores of more areas or scenes than this are one log line, and the stage table lists them down, not across
MAX_GROUP_LINES = 8


@dataclass(frozen=True)
class Stage:
    flag: str          # --<flag>_pass
    module: str        # the step module whose run(args) does the work
    tag: str           # the log tag, "S<n> <name>"
    label: str = ""    # what its output is called in the stage table (stages that make something scored)
    writes_weights: tuple[str, ...] = ()  # flags of the weights it writes (run_sample checks their folders first)
    writes_folder: str = ""  # the flag of the folder of maps, labels or masks it fills (checked, owned, locked)
    writes_files: tuple[str, ...] = ()  # flags of other single files it writes (checked and locked)


STAGES: tuple[Stage, ...] = (
    Stage("train_cam", "step.train_cam", "S1 train_cam", writes_weights=("cam_weights_name", "msg_weights_name")),
    Stage("make_cam", "step.make_cam", "S2 make_cam", "seed CAM (S2)", writes_folder="cam_out_dir"),
    Stage("make_lpcam", "step.make_lpcam", "S3 make_lpcam", "BAC expanded CAM (S3)", writes_folder="lpcam_out_dir"),
    Stage("eval_cam", "step.eval_cam", "S4 eval_cam"),
    Stage("cam_to_ir_label", "step.cam_to_ir_label", "S5 cam_to_ir_label", "confident labels (S5)",
          writes_folder="ir_label_out_dir"),
    Stage("train_amn", "step.train_amn", "S6 train_amn", writes_weights=("amn_weights_name",)),
    Stage("make_amn_cam", "step.make_amn_cam", "S7 make_amn_cam", "AR map (S7)", writes_folder="amn_cam_out_dir"),
    Stage("eval_amn_cam", "step.eval_amn_cam", "S8 eval_amn_cam"),
    Stage("make_pseudo_mask", "step.make_pseudo_mask", "S9 make_pseudo_mask", writes_folder="pseudo_mask_out_dir"),
    Stage("amn_cam_to_ir_label", "step.amn_cam_to_ir_label", "S9b amn_cam_to_ir_label", "AMN confident labels (S9b)",
          writes_folder="amn_ir_label_out_dir"),
    Stage("train_irn", "step.train_irn", "S10 train_irn", writes_weights=("irn_weights_name",)),
    Stage("make_sem_seg", "step.make_sem_seg_labels", "S10 make_sem_seg", "IRN random walk (S10)",
          writes_folder="sem_seg_out_dir"),
    Stage("eval_sem_seg", "step.eval_sem_seg", "S10 eval_sem_seg"),
    Stage("train_seg", "step.train_seg", "S11 train_seg", writes_weights=("seg_weights_name",)),
    Stage("export_seg", "step.export_seg", "S11 export_seg", writes_files=("seg_weights_name",)),  # ONNX beside it
    Stage("make_seg", "step.make_seg", "S11 make_seg", "DeepLabV3+ on pseudo masks (S11)", writes_folder="seg_out_dir"),
    Stage("eval_seg", "step.eval_seg", "S11 eval_seg"),
    Stage("make_footprints", "step.make_footprints", "S12 make_footprints",
          "footprints of DeepLabV3+ on pseudo masks, whole area (S12)", writes_files=("footprints_out",)),
    Stage("eval_footprints", "step.eval_footprints", "S12 eval_footprints"),
)

# Outputs of one stage that mean different things: (flag, variant) -> label.
VARIANT_LABELS = {
    ("make_cam", "msg"): "MSG-SR-Net baseline map (S2)",
    ("make_seg", "ground truth"): "DeepLabV3+ on ground truth (S11, fully supervised upper bound)",
    ("make_footprints", "ground truth"): "footprints of DeepLabV3+ on ground truth, whole area (S12)",
}

_BY_FLAG = {s.flag: s for s in STAGES}
_BY_MODULE = {s.module: s for s in STAGES}


def stage(flag: str) -> Stage:
    return _BY_FLAG[flag]


def stage_tag(module: str) -> str:
    """The log tag of the stage module `module` (its __name__)."""
    return _BY_MODULE[module].tag


def label(flag: str | None, variant: str = "", fallback: str = "") -> str:
    """The stage-table label of what stage `flag` made (`fallback`, e.g. a folder name, when unknown)."""
    if flag in _BY_FLAG:
        return VARIANT_LABELS.get((flag, variant)) or _BY_FLAG[flag].label or fallback
    return fallback


def order(flag: str | None) -> int:
    """Position of stage `flag` in the pipeline (unknown stages last)."""
    return [s.flag for s in STAGES].index(flag) if flag in _BY_FLAG else len(STAGES)
