"""What a finished teacher or row of a study was computed from, so that a rerun reuses it
only under the same settings.

Each teacher file ``teachers/seed-<s>.pt`` gets ``teachers/seed-<s>.json`` and each row result
stores the settings that produced it under ``"inputs"``. A rerun into the same folder compares
them with the current config before anything is trained and refuses on any difference (as
``vs-plugin compress --resume`` does), naming what changed; ``--overwrite`` recomputes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError
from ..pipeline.settings import RECORDED_BEFORE
from .config import StudyConfig, RowSpec

TEACHER_FORMAT = "vs-plugin-experiment-teacher/1"

#: Compress settings added after studies were finished, with the value that reproduces what ran
#: before them: recorded in a row's inputs only when set otherwise, so older results still match.
ADDED_SETTINGS = RECORDED_BEFORE


def _plain(value: Any) -> Any:
    """JSON-normal form (tuples as lists, paths as strings, float keys as strings)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def teacher_inputs(config: StudyConfig, seed: int) -> dict:
    """Everything a seed's teacher depends on."""
    inputs = {
        "dataset": config.dataset, "data_dir": config.data_dir, "teacher": config.teacher,
        "teacher_epochs": config.teacher_epochs, "teacher_lr": config.teacher_lr, "batch_size": config.batch_size,
        "device": config.device, "seed": seed,
    }
    for key, default in (
        ("image_size", None), ("teacher_checkpoint", None), ("teacher_train_fraction", 1.0), ("teacher_lr_schedule", "constant"),
    ):
        if getattr(config, key) != default:  # recorded only when set, so older finished studies still match
            inputs[key] = getattr(config, key)
    return _plain(inputs)


def row_inputs(config: StudyConfig, row: RowSpec, seed: int, fraction: float) -> dict:
    """Everything one row's result depends on (its teacher's inputs included)."""
    inputs: dict = {
        "teacher": teacher_inputs(config, seed),
        "row": dataclasses.asdict(row),
        "fraction": fraction,
        "epochs": config.epochs_for(row, fraction),
        "batch_size": config.batch_size,
        "lr": config.lr,
        "kd_weight": config.kd_weight,
        "temperature": config.temperature,
    }
    if config.finetune_lr_schedule != "constant":  # recorded only when set, so older finished studies still match
        inputs["finetune_lr_schedule"] = config.finetune_lr_schedule
    if config.metrics != ("accuracy", "footprint"):
        inputs["metrics"] = {"names": config.metrics, "latency": dict(config.latency)}
    if row.kind == "compress":
        settings = config.compress_settings(row, seed, fraction).to_dict()
        inputs["compress_settings"] = {k: v for k, v in settings.items() if ADDED_SETTINGS.get(k, object()) != v}
    if row.kind == "method":
        inputs["dense_student_epochs"] = config.dense_student_epochs
        inputs["settings"] = dict(config.settings)
        if row.match is not None:
            matched = next(r for r in config.rows if r.label == row.match)
            inputs["matched_row"] = row_inputs(config, matched, seed, fraction)
    return _plain(inputs)


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current)):
            found += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    if saved != current:
        return [f"{prefix.rstrip('.')}: {saved!r} -> {current!r}"]
    return []


def check_inputs(what: Path, saved: Optional[dict], current: dict) -> None:
    """Refuse to reuse ``what`` when it was computed from other settings than ``current``."""
    if saved is None:
        raise ConfigError(
            f"{what} does not record the settings it was computed from (written by an older vs-plugin); "
            "pass --overwrite to recompute the experiment, or choose another --out"
        )
    differing = _differences(saved, current)
    if differing:
        shown = "; ".join(differing[:4]) + (f" (+{len(differing) - 4} more)" if len(differing) > 4 else "")
        raise ConfigError(
            f"{what} was computed with other settings ({shown}); pass --overwrite to recompute, or choose another --out"
        )


def teacher_record_path(teacher_path: Path) -> Path:
    return teacher_path.with_suffix(".json")


def read_teacher_inputs(teacher_path: Path) -> Optional[dict]:
    record = teacher_record_path(teacher_path)
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data.get("inputs") if isinstance(data, dict) and data.get("format") == TEACHER_FORMAT else None


__all__ = ["teacher_inputs", "row_inputs", "check_inputs", "teacher_record_path", "read_teacher_inputs", "TEACHER_FORMAT"]
