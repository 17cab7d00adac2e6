"""Command-line options generated from :class:`CompressSettings`, so defaults live in one place.

Precedence: the dataclass defaults < ``--config FILE`` < options given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ..config_files import read_yaml
from ..errors import ConfigError
from ..pipeline.settings import CompressSettings, with_recorded_defaults

HELP = {
    "epochs": "student training epochs",
    "teacher_epochs": "teacher training epochs (only when no --teacher-checkpoint is given)",
    "batch_size": "training batch size",
    "lr": "student learning rate (Adam)",
    "teacher_lr": "teacher learning rate (Adam)",
    "teacher_lr_schedule": "teacher learning-rate schedule: constant or cosine (annealed per epoch towards 0)",
    "finetune_lr_schedule": "learning-rate schedule of the masked fine-tune: cosine (annealed per epoch towards 0 over the fine-tune) or constant",
    "seed": "random seed (initialisation, noise, shuffles, low-data subsets)",
    "device": "auto, cpu or cuda",
    "train_fraction": "fraction of the training set the student uses, in (0, 1] (low-data regime; stratified, fixed by --seed; a teacher trained here uses all of it)",
    "num_workers": "DataLoader worker processes for datasets read from disk",
    "progress": "progress bars",
    "cache_teacher": "compute the frozen teacher's outputs once per training sample (in-memory data only)",
    "amp": "mixed precision for forward passes: off, bf16, or fp16 (CUDA, with a gradient scaler); parameters, KL and BSR stay fp32",
    "granularity": "weight (unstructured) or channel (one gate per output channel)",
    "threshold": "log alpha at or above which a weight/channel is pruned",
    "kl": "KL approximation: sparse_vd (Molchanov et al.) or vbd (Liu et al.)",
    "init_log_sigma2": "initial log sigma^2 (default -15 for a teacher copy, -10 from scratch), raised per unit to --min-init-log-alpha",
    "min_init_log_alpha": "lowest starting log alpha of any weight or gate (default -6: inside the clip, so the KL trains it)",
    "log_alpha_clip": "log alpha is clipped to [-clip, clip]",
    "layer_types": "layer types made variational",
    "include": "only module names matching these fnmatch patterns",
    "exclude": "leave module names matching these fnmatch patterns plain",
    "head": "make the classifier head variational (never gated in channel mode)",
    "stem": "make the first layer variational",
    "kd_weight": "lambda_T, weight of the distillation term (0: no teacher signal)",
    "temperature": "distillation temperature T",
    "kd_reduction": "batchmean (T^2, per sample) or elementmean (2 T^2, per element)",
    "ce_weighting": "full (CE weight 1) or complement (1 - lambda_T)",
    "kl_weight": "lambda_V, weight of the KL/N term",
    "kl_warmup_epochs": "epochs over which the KL weight ramps from 0 to 1",
    "kl_hold_epochs": "epochs with KL weight 0 before the ramp",
    "bsr_weight": "lambda_g, weight of the Block Sparse Regulariser (0: off)",
    "bsr_norm": "l1_inf, l2_1 (readings of the paper, unscaled) or group (teacher-guided group lasso over input units, scaled like the KL)",
    "lp_gamma": "gamma of the locality-preserving feature loss (0: off)",
    "lp_k": "neighbours for the locality-preserving loss",
    "lp_sigma2": "heat-kernel width of the locality-preserving loss, or 'median'",
    "lp_student_layer": "student feature layer (default: input of the head)",
    "lp_teacher_layer": "teacher feature layer (default: input of the head)",
    "threshold_sweep": "also report accuracy and sparsity at these log alpha thresholds",
    "compile_kl": "run each variational layer's per-weight pass (sigma^2, KL, its gradient) as one torch.compile'd loop when the student has a layer of >= 65,536 weights and a C++ compiler (CPU) or Triton (GPU) is found; --no-compile-kl: eager PyTorch, the same numbers",
    "eval_every": "measure test accuracy and sparsity every N student/teacher epochs (and after the last)",
    "kl_min_samples": "N_0: the KL is divided by max(N, N_0), tempering it on small data (0: by N, the exact ELBO)",
    "recipe": "auto (three-phase with a target, variational without), variational (one variational phase) or three-phase (dense KD warm start, variational phase, prune, masked KD fine-tune)",
    "phase_split": "three-phase recipe: fractions of --epochs for warm start, variational phase and fine-tune",
    "target_sparsity": "prune to exactly this fraction of the variational layers' units (weights, or channels with --granularity channel) by one global log alpha ranking (default: the threshold decides)",
    "prune_schedule": "with a target: gradual (mask the highest log alpha units on the cubic schedule during the variational phase) or end (prune once after it, the KL weight steered by --kl-controller)",
    "prune_ramp": "with --prune-schedule gradual: fraction of the variational phase over which the sparsity rises to the target",
    "kl_controller": "with a target and --prune-schedule end: adapt the KL weight during the variational phase so the threshold sparsity tracks the target (kl_weight is the starting point)",
    "variational_kd_weight": "lambda_T of the variational (or structured gate) phase alone; the warm start and the fine-tune keep --kd-weight (default: --kd-weight)",
    "layer_floor": "with a target: share of each layer's uniform allocation (1 - target) x units kept whatever the ranking (0 lets a layer be emptied)",
    "augment": "training augmentation of image data: timm (timm's create_transform(is_training=True)) or none (eval transform)",
    "hflip": "horizontal flip probability of the timm augmentation",
    "color_jitter": "colour jitter strength of the timm augmentation (0: off)",
    "crop_scale_min": "smallest area fraction of timm's random resized crop",
    "auto_augment": "timm AutoAugment/RandAugment policy, e.g. rand-m9-mstd0.5 (off)",
    "random_erasing": "random erasing probability of the timm augmentation",
    "channels_last": "NHWC memory layout for conv models and image batches on CUDA",
}


def _number_or_median(text: str) -> Any:
    return text if text == "median" else float(text)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per settings field; unset options stay absent from the namespace."""
    group = parser.add_argument_group("method and training settings (defaults in parentheses)")
    for field in dataclasses.fields(CompressSettings):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        shown = " ".join(map(str, default)) or "none" if isinstance(default, tuple) else default
        help_text = f"{HELP.get(field.name, field.name)} ({shown})"
        kwargs: dict = dict(dest=field.name, default=argparse.SUPPRESS, help=help_text)
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs["nargs"] = "*"
            if field.name in ("threshold_sweep", "phase_split"):
                kwargs["type"] = float
        elif field.name == "lp_sigma2":
            kwargs["type"] = _number_or_median
        elif isinstance(default, int):
            kwargs["type"] = int
        elif isinstance(default, float) or field.name in ("init_log_sigma2", "target_sparsity", "variational_kd_weight"):
            kwargs["type"] = float
        if field.name in ("device", "amp", "augment", "granularity", "kl", "kd_reduction", "ce_weighting", "bsr_norm", "recipe"):
            kwargs["metavar"] = field.name.upper()
        group.add_argument(flag, **kwargs)


def read_config_file(path: Path) -> dict:
    """Settings from a YAML/JSON file; a ``report.json`` is read through its ``config`` key."""
    data = read_yaml(path, "config file")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting names to values")
    if "config" in data and isinstance(data["config"], dict) and "format" in data:
        data = with_recorded_defaults(data["config"])  # a report from before a default changed repeats its run
    return data
