"""The study file: one dataset and teacher, rows of methods, seeds, training fractions, one budget.

    name: paper-mlp-fashion-mnist
    dataset: fashion-mnist
    teacher: mlp:784-1200-1200-10     # or teacher_checkpoint: path (then teacher_epochs is unused)
    teacher_epochs: 8                 # one teacher per seed
    teacher_lr_schedule: cosine       # or constant (the default)
    finetune_lr_schedule: cosine      # every row's rate after its last pruning step (default constant)
    seeds: [0, 1, 2]
    train_fractions: [1.0]            # of the students' training set (low-data regime)
    epochs: 30                        # the total budget of every row (epochs_by_fraction overrides it)
    batch_size: 128
    settings: {kd_weight: 1.0}        # vs-plugin compress settings shared by the compress rows
    student: mlp:784-500-50-10        # default student of every row; "teacher" = a copy of the trained teacher
    dense_student_epochs: 10          # method rows prune a dense CE+KD student trained this long
    targets: [0.9, 0.98]              # default targets of rows that name none
    metrics: [accuracy, footprint]    # + macs, latency (torch-pruning's counter; CPU timing)
    rows:
      - {label: VS, method: compress, settings: {bsr_weight: 0.001}}
      - {label: KD alone, method: kd}
      - {label: NNI Level, method: level, config_list: [{op_types: [Linear]}], match: VS}

A row is ``{label, method, student, target | targets | match, options}``. ``method`` is
``compress`` (a ``vs-plugin compress`` run: the Variational Student and its variants, Sparse VD
or VBD alone with ``kd_weight: 0``; its target is ``target_sparsity``), ``kd`` (a dense student
trained with CE + KD for the budget) or any registered compression method (``level``,
``gradual_magnitude``, ``tp-magnitude``, ``vs-structured``, ...) at ``target`` or at the sparsity
a ``match``-ed compress row reached with the same seed. A row with several targets becomes one
row per target, labelled ``label @ target``. Unknown keys are errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional

from ..config_files import read_yaml
from ..errors import ConfigError
from ..pipeline.settings import CompressSettings
from ..training.optim import check_lr_schedule

BUILTIN_METHODS = ("compress", "kd")
ALWAYS_MEASURED = ("accuracy", "footprint")
LATENCY_KEYS = ("batch_sizes", "repeats", "threads")
TOP_KEYS = {
    "name", "description", "dataset", "data_dir", "image_size", "teacher", "teacher_checkpoint", "teacher_epochs",
    "teacher_lr", "teacher_lr_schedule", "teacher_train_fraction", "seeds", "train_fractions", "epochs", "epochs_by_fraction", "batch_size",
    "lr", "finetune_lr_schedule", "kd_weight", "temperature", "settings", "dense_student_epochs", "rows", "student", "targets", "metrics",
    "latency",
}
ROW_KEYS = {"label", "method", "student", "settings", "config_list", "options", "target", "targets", "match", "epochs"}
TEACHER_COPY = "teacher"


@dataclass(frozen=True)
class RowSpec:
    """One row of the study's table (after targets are expanded: at most one target)."""

    label: str
    method: str
    student: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    config_list: tuple = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    target: Optional[float] = None
    match: Optional[str] = None
    epochs: Optional[int] = None

    @property
    def kind(self) -> str:
        """``compress``, ``kd`` or ``method`` (a registered compression method)."""
        return self.method if self.method in BUILTIN_METHODS else "method"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")

    def entry(self) -> "MethodEntry":
        """The row as a compression method's entry (name, label, config_list, target, options)."""
        from ..compare.config import MethodEntry

        targets = None if self.target is None else (self.target,)
        return MethodEntry(self.method, self.label, tuple(dict(e) for e in self.config_list), targets, dict(self.options))


@dataclass(frozen=True)
class StudyConfig:
    name: str
    dataset: str
    teacher: str
    rows: tuple[RowSpec, ...]
    data_dir: Optional[Path] = None
    image_size: Optional[int] = None
    teacher_checkpoint: Optional[Path] = None
    teacher_epochs: int = 10
    teacher_lr: float = 1e-3
    teacher_lr_schedule: str = "constant"
    teacher_train_fraction: float = 1.0
    seeds: tuple[int, ...] = (0, 1, 2)
    train_fractions: tuple[float, ...] = (1.0,)
    epochs: int = 30
    epochs_by_fraction: Mapping[float, int] = field(default_factory=dict)
    batch_size: int = 64
    lr: float = 1e-3
    finetune_lr_schedule: str = "constant"
    kd_weight: float = 1.0
    temperature: float = 4.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    dense_student_epochs: int = 10
    metrics: tuple[str, ...] = ("accuracy", "footprint")
    latency: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def device(self) -> str:
        return str(self.settings.get("device", "auto"))

    def epochs_for(self, row: RowSpec, fraction: float) -> int:
        if row.epochs is not None:
            return row.epochs
        return int(self.epochs_by_fraction.get(fraction, self.epochs))

    def compress_settings(self, row: RowSpec, seed: int, fraction: float) -> CompressSettings:
        values = {
            "batch_size": self.batch_size, "lr": self.lr, "kd_weight": self.kd_weight, "temperature": self.temperature,
            "finetune_lr_schedule": self.finetune_lr_schedule, **dict(self.settings), **dict(row.settings),
            "seed": seed, "train_fraction": fraction, "epochs": self.epochs_for(row, fraction), "progress": False,
        }
        if row.target is not None:
            values["target_sparsity"] = row.target
        return CompressSettings.from_mapping(values)

    def with_seeds(self, seeds: tuple[int, ...]) -> "StudyConfig":
        return replace(self, seeds=seeds)


def _require(mapping: Mapping, key: str, where: str) -> Any:
    if key not in mapping:
        raise ConfigError(f"{where} needs '{key}'")
    return mapping[key]


def _number(value: Any, where: str) -> float:
    try:
        return float(value)  # PyYAML reads 1e-3 (no dot) as a string
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number, got {value!r}") from None


def _integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _targets(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where} must be a non-empty list of targets in (0, 1), got {value!r}")
    targets = tuple(_number(t, where) for t in value)
    if not all(0 < t < 1 for t in targets) or len(set(targets)) != len(targets):
        raise ConfigError(f"{where} must hold distinct targets in (0, 1), got {list(value)}")
    return targets


def _rows(data: Any, index: int, defaults: Mapping[str, Any]) -> list[RowSpec]:
    """One row of the file: a RowSpec per target (one when it names a single target, a match or none)."""
    where = f"row {index + 1}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    if "kind" in data:
        raise ConfigError(f"{where}: 'kind' is now 'method' (compress, kd, or a compression method name such as level)")
    unknown = sorted(set(data) - ROW_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(ROW_KEYS))}")
    label = str(_require(data, "label", where))
    where = f"{where} ({label})"
    method = _require(data, "method", where)
    if not isinstance(method, str) or not method:
        raise ConfigError(f"{where}: method must be compress, kd or a compression method name, got {method!r}")
    student = data.get("student", defaults.get("student"))
    if not isinstance(student, str):
        raise ConfigError(f"{where} needs a 'student' model name (or a top-level 'student')")
    if "target" in data and "targets" in data:
        raise ConfigError(f"{where}: give 'target' or 'targets', not both")
    targets: tuple[Optional[float], ...] = (None,)
    if "target" in data:
        targets = (_targets([data["target"]], f"{where}: target")[0],)
    elif "targets" in data:
        targets = _targets(data["targets"], f"{where}: targets")
    elif (data.get("match") is None and defaults.get("targets") and method != "kd"
          and not (method == "compress" and "target_sparsity" in (data.get("settings") or {}))):
        targets = defaults["targets"]
    if data.get("match") is not None and targets != (None,):
        raise ConfigError(f"{where}: give a target or a match, not both")
    settings, options = dict(data.get("settings") or {}), dict(data.get("options") or {})
    if method != "compress" and settings:
        raise ConfigError(f"{where}: 'settings' apply only to compress rows (other methods take 'options')")
    if method in BUILTIN_METHODS and (options or data.get("config_list")):
        raise ConfigError(f"{where}: 'options' and 'config_list' apply only to compression methods, not to {method} rows")
    if method == "kd" and (targets != (None,) or data.get("match")):
        raise ConfigError(f"{where}: a kd row trains a dense student; it takes no target or match")
    epochs = data.get("epochs")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"{where}: epochs must be a positive integer, got {epochs!r}")
    return [
        RowSpec(
            label=label if len(targets) == 1 else f"{label} @ {target:g}", method=method, student=student, settings=settings,
            config_list=tuple(data.get("config_list") or ()), options=options, target=target, match=data.get("match"),
            epochs=epochs,
        )
        for target in targets
    ]


def _path(value: Any, key: str, base_dir: Path) -> Optional[Path]:
    if value is None:
        return None
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"{key} must be a path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def parse_study(data: Mapping[str, Any], base_dir: Path = Path(".")) -> StudyConfig:
    """Validate a mapping (the YAML file's content) into a :class:`StudyConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError("a study config must be a mapping")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown study key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(TOP_KEYS))}")
    rows_data = _require(data, "rows", "the study")
    if not isinstance(rows_data, list) or not rows_data:
        raise ConfigError("'rows' must be a non-empty list")
    defaults = {"student": data.get("student"), "targets": _targets(data["targets"], "targets") if "targets" in data else None}
    rows = tuple(row for i, raw in enumerate(rows_data) for row in _rows(raw, i, defaults))
    for where, settings in [("settings", data.get("settings") or {})] + [(f"row {r.label!r} settings", r.settings) for r in rows]:
        if isinstance(settings, Mapping) and "finetune_lr_schedule" in settings:
            raise ConfigError(
                f"{where} sets finetune_lr_schedule; it is part of every row's budget: set it once at the top of the study "
                "(finetune_lr_schedule: constant or cosine)"
            )
    labels = [r.label for r in rows]
    duplicates = sorted({l for l in labels if labels.count(l) > 1})
    if duplicates:
        raise ConfigError(f"row labels must be unique; repeated: {', '.join(duplicates)}")
    for index, row in enumerate(rows):
        if row.match is not None:
            earlier = {r.label: r for r in rows[:index]}
            if row.match not in earlier or earlier[row.match].kind != "compress":
                raise ConfigError(f"row {row.label!r} matches {row.match!r}, which must be an earlier compress row")
    fractions = tuple(_number(f, "train_fractions") for f in data.get("train_fractions", (1.0,)))
    for fraction in fractions + (_number(data.get("teacher_train_fraction", 1.0), "teacher_train_fraction"),):
        if not 0 < fraction <= 1:
            raise ConfigError(f"train_fractions and teacher_train_fraction must lie in (0, 1], got {fraction}")
    seeds = tuple(_integer(s, "seeds", 0) for s in data.get("seeds", (0, 1, 2)))
    if not seeds:
        raise ConfigError("'seeds' must list at least one seed")
    from .metrics import STUDY_METRICS

    metrics = tuple(data.get("metrics", ALWAYS_MEASURED))
    for metric in metrics:
        if metric not in ALWAYS_MEASURED:
            STUDY_METRICS.get(metric, known=list(ALWAYS_MEASURED + STUDY_METRICS.names()))
    latency = dict(data.get("latency") or {})
    if sorted(set(latency) - set(LATENCY_KEYS)):
        raise ConfigError(f"latency accepts {', '.join(LATENCY_KEYS)}, got {', '.join(sorted(latency))}")
    config = StudyConfig(
        name=str(_require(data, "name", "the study")), dataset=str(_require(data, "dataset", "the study")),
        teacher=str(_require(data, "teacher", "the study")), rows=rows,
        data_dir=_path(data.get("data_dir"), "data_dir", base_dir), image_size=data.get("image_size"),
        teacher_checkpoint=_path(data.get("teacher_checkpoint"), "teacher_checkpoint", base_dir),
        teacher_epochs=_integer(data.get("teacher_epochs", 10), "teacher_epochs", 0), teacher_lr=_number(data.get("teacher_lr", 1e-3), "teacher_lr"),
        teacher_lr_schedule=check_lr_schedule(data.get("teacher_lr_schedule", "constant"), "teacher_lr_schedule"),
        teacher_train_fraction=_number(data.get("teacher_train_fraction", 1.0), "teacher_train_fraction"),
        seeds=seeds, train_fractions=fractions, epochs=_integer(data.get("epochs", 30), "epochs", 1),
        epochs_by_fraction={float(k): int(v) for k, v in (data.get("epochs_by_fraction") or {}).items()},
        batch_size=_integer(data.get("batch_size", 64), "batch_size", 1), lr=_number(data.get("lr", 1e-3), "lr"),
        finetune_lr_schedule=check_lr_schedule(data.get("finetune_lr_schedule", "constant"), "finetune_lr_schedule"),
        kd_weight=_number(data.get("kd_weight", 1.0), "kd_weight"), temperature=_number(data.get("temperature", 4.0), "temperature"),
        settings=dict(data.get("settings") or {}), dense_student_epochs=_integer(data.get("dense_student_epochs", 10), "dense_student_epochs", 0),
        metrics=tuple(dict.fromkeys(ALWAYS_MEASURED + metrics)), latency=latency,
        description=str(data.get("description", "")),
    )
    from ..compare.registry import get_method  # the registry imports the method protocol, which imports torch

    for row in rows:  # every row must be runnable before anything runs
        if row.kind == "compress":
            config.compress_settings(row, seeds[0], fractions[0])
        elif row.kind == "method":
            planned = get_method(row.method).plan(row.entry(), ())
            if not planned and row.match is None:
                raise ConfigError(f"row {row.label!r}: {row.method} needs 'target', 'targets' or 'match' (or a top-level 'targets')")
    return config


def load_study(path: Path) -> StudyConfig:
    data = read_yaml(path, "study config")
    return parse_study(data, Path(path).parent)
