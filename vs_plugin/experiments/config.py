"""The config of ``vs-plugin experiment``: one dataset and teacher, several rows, several seeds
and (optionally) several training-set fractions.

    name: paper-mlp-fashion-mnist
    dataset: fashion-mnist
    teacher: mlp:784-1200-1200-10
    teacher_epochs: 8               # one teacher per seed, trained on the full training set
    seeds: [0, 1, 2]
    train_fractions: [1.0]          # of the student's training set (low-data regime)
    epochs: 30                      # the budget of every row (epochs_by_fraction overrides it)
    batch_size: 128
    settings: {kd_weight: 1.0}      # vs-plugin compress settings shared by the compress rows
    dense_student_epochs: 10        # method rows prune a dense CE+KD student trained this long
    rows:
      - {label: VS, kind: compress, student: mlp:784-500-50-10, settings: {bsr_weight: 0.001}}
      - {label: KD alone, kind: kd, student: mlp:784-500-50-10}
      - {label: NNI Level, kind: method, method: level, student: mlp:784-500-50-10,
         config_list: [{op_types: [Linear]}], match: VS}

Row kinds: ``compress`` (a ``vs-plugin compress`` run: the Variational Student and its variants,
Sparse VD or VBD alone with ``kd_weight: 0``), ``kd`` (a dense student trained with CE + KD for the
budget: "KD alone"), ``method`` (any ``vs-plugin compare`` method, at ``target`` sparsity or at
the sparsity a ``match``-ed compress row reached with the same seed). Unknown keys are errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..config_files import read_yaml

from ..errors import ConfigError
from ..pipeline.settings import CompressSettings

ROW_KINDS = ("compress", "kd", "method")
TOP_KEYS = {
    "name", "dataset", "data_dir", "teacher", "teacher_epochs", "teacher_lr", "seeds", "train_fractions", "epochs",
    "epochs_by_fraction", "batch_size", "lr", "kd_weight", "temperature", "settings", "dense_student_epochs", "rows",
    "student", "description",
}
ROW_KEYS = {"label", "kind", "student", "settings", "method", "config_list", "target", "match", "epochs"}


@dataclass(frozen=True)
class RowSpec:
    """One row of the experiment's table."""

    label: str
    kind: str
    student: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    method: Optional[str] = None
    config_list: tuple = ()
    target: Optional[float] = None
    match: Optional[str] = None
    epochs: Optional[int] = None

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    dataset: str
    teacher: str
    rows: tuple[RowSpec, ...]
    data_dir: Optional[Path] = None
    teacher_epochs: int = 10
    teacher_lr: float = 1e-3
    seeds: tuple[int, ...] = (0, 1, 2)
    train_fractions: tuple[float, ...] = (1.0,)
    epochs: int = 30
    epochs_by_fraction: Mapping[float, int] = field(default_factory=dict)
    batch_size: int = 64
    lr: float = 1e-3
    kd_weight: float = 1.0
    temperature: float = 4.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    dense_student_epochs: int = 10
    description: str = ""

    def epochs_for(self, row: RowSpec, fraction: float) -> int:
        if row.epochs is not None:
            return row.epochs
        return int(self.epochs_by_fraction.get(fraction, self.epochs))

    def compress_settings(self, row: RowSpec, seed: int, fraction: float) -> CompressSettings:
        values = {
            "batch_size": self.batch_size, "lr": self.lr, "kd_weight": self.kd_weight, "temperature": self.temperature,
            **dict(self.settings), **dict(row.settings),
            "seed": seed, "train_fraction": fraction, "epochs": self.epochs_for(row, fraction), "progress": False,
        }
        return CompressSettings.from_mapping(values)


def _require(mapping: Mapping, key: str, where: str) -> Any:
    if key not in mapping:
        raise ConfigError(f"{where} needs '{key}'")
    return mapping[key]


def _row(data: Any, index: int, default_student: Optional[str]) -> RowSpec:
    where = f"row {index + 1}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    unknown = sorted(set(data) - ROW_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(ROW_KEYS))}")
    kind = _require(data, "kind", where)
    if kind not in ROW_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(ROW_KINDS)}, got {kind!r}")
    student = data.get("student", default_student)
    if not isinstance(student, str):
        raise ConfigError(f"{where} needs a 'student' model name (or a top-level 'student')")
    row = RowSpec(
        label=str(_require(data, "label", where)), kind=kind, student=student, settings=dict(data.get("settings") or {}),
        method=data.get("method"), config_list=tuple(data.get("config_list") or ()), target=data.get("target"),
        match=data.get("match"), epochs=data.get("epochs"),
    )
    if kind == "method":
        if not row.method:
            raise ConfigError(f"{where} ({row.label}): a method row needs 'method' (a vs-plugin compare method name)")
        if (row.target is None) == (row.match is None):
            raise ConfigError(f"{where} ({row.label}): a method row needs exactly one of 'target' and 'match'")
    elif row.method or row.config_list or row.target is not None or row.match:
        raise ConfigError(f"{where} ({row.label}): method, config_list, target and match apply only to method rows")
    if kind != "compress" and row.settings:
        raise ConfigError(f"{where} ({row.label}): 'settings' apply only to compress rows")
    return row


def parse_experiment(data: Mapping[str, Any], base_dir: Path = Path(".")) -> ExperimentConfig:
    """Validate a mapping (the YAML file's content) into an :class:`ExperimentConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError("an experiment config must be a mapping")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown experiment key(s) {', '.join(unknown)}; accepted: {', '.join(sorted(TOP_KEYS))}")
    rows_data = _require(data, "rows", "the experiment")
    if not isinstance(rows_data, list) or not rows_data:
        raise ConfigError("'rows' must be a non-empty list")
    rows = tuple(_row(r, i, data.get("student")) for i, r in enumerate(rows_data))
    labels = [r.label for r in rows]
    duplicates = sorted({l for l in labels if labels.count(l) > 1})
    if duplicates:
        raise ConfigError(f"row labels must be unique; repeated: {', '.join(duplicates)}")
    for index, row in enumerate(rows):
        if row.match is not None:
            earlier = {r.label: r for r in rows[:index]}
            if row.match not in earlier or earlier[row.match].kind != "compress":
                raise ConfigError(f"row {row.label!r} matches {row.match!r}, which must be an earlier compress row")
    fractions = tuple(float(f) for f in data.get("train_fractions", (1.0,)))
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ConfigError(f"train_fractions must lie in (0, 1], got {fraction}")
    seeds = tuple(int(s) for s in data.get("seeds", (0, 1, 2)))
    if not seeds:
        raise ConfigError("'seeds' must list at least one seed")
    data_dir = data.get("data_dir")
    config = ExperimentConfig(
        name=str(_require(data, "name", "the experiment")), dataset=str(_require(data, "dataset", "the experiment")),
        teacher=str(_require(data, "teacher", "the experiment")), rows=rows,
        data_dir=None if data_dir is None else (base_dir / data_dir),
        teacher_epochs=int(data.get("teacher_epochs", 10)), teacher_lr=float(data.get("teacher_lr", 1e-3)),
        seeds=seeds, train_fractions=fractions, epochs=int(data.get("epochs", 30)),
        epochs_by_fraction={float(k): int(v) for k, v in (data.get("epochs_by_fraction") or {}).items()},
        batch_size=int(data.get("batch_size", 64)), lr=float(data.get("lr", 1e-3)),
        kd_weight=float(data.get("kd_weight", 1.0)), temperature=float(data.get("temperature", 4.0)),
        settings=dict(data.get("settings") or {}), dense_student_epochs=int(data.get("dense_student_epochs", 10)),
        description=str(data.get("description", "")),
    )
    for row in rows:  # every compress row's settings must be valid before anything runs
        if row.kind == "compress":
            config.compress_settings(row, seeds[0], fractions[0])
    return config


def load_experiment(path: Path) -> ExperimentConfig:
    data = read_yaml(path, "experiment config")
    return parse_experiment(data, Path(path).parent)
