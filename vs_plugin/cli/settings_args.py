"""Command-line options generated from :class:`CompressSettings`, so defaults live in one place.

Precedence: the dataclass defaults < ``--config FILE`` < options given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..pipeline.settings import CompressSettings

HELP = {
    "epochs": "student training epochs",
    "teacher_epochs": "teacher training epochs (only when no --teacher-checkpoint is given)",
    "batch_size": "training batch size",
    "lr": "student learning rate (Adam)",
    "teacher_lr": "teacher learning rate (Adam)",
    "seed": "random seed (initialisation, noise, shuffles, low-data subsets)",
    "device": "auto, cpu or cuda",
    "train_fraction": "fraction of the training set the student uses, in (0, 1] (low-data regime; stratified, fixed by --seed; a teacher trained here uses all of it)",
    "num_workers": "DataLoader worker processes for datasets read from disk",
    "progress": "progress bars",
    "cache_teacher": "compute the frozen teacher's outputs once per training sample (in-memory data only)",
    "amp": "mixed precision for forward passes: off or bf16 (parameters, KL and BSR stay fp32)",
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
    "bsr_norm": "l1_inf or l2_1",
    "lp_gamma": "gamma of the locality-preserving feature loss (0: off)",
    "lp_k": "neighbours for the locality-preserving loss",
    "lp_sigma2": "heat-kernel width of the locality-preserving loss, or 'median'",
    "lp_student_layer": "student feature layer (default: input of the head)",
    "lp_teacher_layer": "teacher feature layer (default: input of the head)",
    "threshold_sweep": "also report accuracy and sparsity at these log alpha thresholds",
    "compile_kl": "compute the KL term with torch.compile (same value; ~3x cheaper KL on long CPU runs, ~10 s to compile)",
}


def _number_or_median(text: str) -> Any:
    return text if text == "median" else float(text)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per settings field; unset options stay absent from the namespace."""
    group = parser.add_argument_group("method and training settings (defaults in parentheses)")
    for field in dataclasses.fields(CompressSettings):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        help_text = f"{HELP.get(field.name, field.name)} ({default if not isinstance(default, tuple) else ' '.join(default) or 'none'})"
        kwargs: dict = dict(dest=field.name, default=argparse.SUPPRESS, help=help_text)
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs["nargs"] = "*"
            if field.name == "threshold_sweep":
                kwargs["type"] = float
        elif field.name == "lp_sigma2":
            kwargs["type"] = _number_or_median
        elif isinstance(default, int):
            kwargs["type"] = int
        elif isinstance(default, float) or field.name == "init_log_sigma2":
            kwargs["type"] = float
        if field.name in ("device", "amp", "granularity", "kl", "kd_reduction", "ce_weighting", "bsr_norm"):
            kwargs["metavar"] = field.name.upper()
        group.add_argument(flag, **kwargs)


def read_config_file(path: Path) -> dict:
    """Settings from a YAML/JSON file; a ``report.json`` is read through its ``config`` key."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"config file {path} is not valid {'JSON' if str(path).endswith('.json') else 'YAML'}: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of setting names to values")
    if "config" in data and isinstance(data["config"], dict) and "format" in data:
        data = data["config"]
    return data
