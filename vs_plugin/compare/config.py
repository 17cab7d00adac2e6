"""The config of ``vs-plugin compare``: data, teacher, student, the shared training budget, methods.

A YAML file such as::

    dataset: digits
    teacher: mlp:in-1200-1200-out
    student: mlp:in-500-50-out
    teacher_epochs: 20          # ignored when teacher_checkpoint is given
    dense_student_epochs: 10    # the CE+KD-trained dense student every method starts from (0: random init)
    train_fraction: 1.0         # of the training set the students use (low-data); a teacher trained here uses all
    epochs: 30                  # the budget: the Variational Student trains, baselines fine-tune, this long
    batch_size: 64
    lr: 0.001
    finetune_lr_schedule: constant  # or cosine: each method's rate after its last pruning step
    kd_weight: 1.0              # the CE + KD loss of the dense student and of every fine-tuning
    temperature: 4.0
    targets: [0.9, 0.95, 0.98]  # target sparsities of every method (see below)
    methods:
      - name: variational_student
        config_list: [{op_types: [Linear], sparse_threshold: 3.0}]
      - name: level
        config_list: [{op_types: [Linear], global_group_id: 0}]

Top-level ``targets`` apply to every method entry that names no ``targets`` of its own and whose
config_list sets no sparsity (``sparse_ratio``, ``sparse_threshold``): the Variational Student
entry above keeps its threshold, every other entry runs at each target. Without top-level
``targets`` the baselines run at the default ones and the Variational Student prunes by its
threshold.

Unknown keys, wrong types and out-of-range values are errors naming the key (and, inside
``methods``, the entry's method). Paths (``teacher_checkpoint``, ``data_dir``) are relative to the
config file's folder.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

from ..config_files import read_yaml

from ..errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
METHOD_KEYS = ("name", "label", "config_list", "targets", "options")
#: config_list keys that set the sparsity (NNI 3.0); an entry with one chooses its own sparsity.
SPARSITY_KEYS = ("sparse_ratio", "sparse_threshold")


def sets_sparsity(item: Mapping[str, Any]) -> bool:
    """Whether a config_list item sets the sparsity, directly or in ``target_settings``."""
    if any(key in item for key in SPARSITY_KEYS):
        return True
    settings = item.get("target_settings") or {}
    return isinstance(settings, Mapping) and any(
        isinstance(s, Mapping) and any(k in s for k in SPARSITY_KEYS) for s in settings.values()
    )


@dataclass(frozen=True)
class MethodEntry:
    """One method of the comparison.

    Attributes:
        name: registered method name (``variational_student``, ``level``, ``l1``...).
        label: row label in the tables (default: the name); unique within a config.
        config_list: the method's NNI-style config_list (which modules, granularity, ...).
        targets: target sparsities for this method (None: the config's ``targets``, or what the
            method does without one).
        options: method-specific settings (e.g. loss settings of the Variational Student, or
            extra arguments of an NNI pruner).
    """

    name: str
    label: str
    config_list: tuple[Mapping[str, Any], ...] = ()
    targets: Optional[tuple[float, ...]] = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def config_list_copy(self) -> list[dict]:
        """A deep copy of the config_list that a method may modify."""
        return [copy.deepcopy(dict(entry)) for entry in self.config_list]


@dataclass(frozen=True)
class CompareConfig:
    """Everything ``vs-plugin compare`` runs; see the module docstring for the YAML form."""

    dataset: str = "digits"
    teacher: str = "mlp:in-1200-1200-out"
    student: str = "mlp:in-500-50-out"
    data_dir: Optional[Path] = None
    image_size: Optional[int] = None
    teacher_checkpoint: Optional[Path] = None
    teacher_epochs: int = 20
    teacher_lr: float = 1e-3
    teacher_lr_schedule: str = "constant"
    dense_student_epochs: int = 10
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    finetune_lr_schedule: str = "constant"
    kd_weight: float = 1.0
    temperature: float = 4.0
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    train_fraction: float = 1.0
    targets: tuple[float, ...] = (0.9, 0.95, 0.98)
    methods: tuple[MethodEntry, ...] = ()

    def replace(self, **changes: Any) -> "CompareConfig":
        config = dataclasses.replace(self, **changes)
        _check_values(config)
        return config

    def to_study(self, name: str, reference_rows: bool = True) -> "StudyConfig":
        """This comparison as a study of the one engine: one seed, a row per (method, target), and
        (``reference_rows``) the dense starting student as a ``kd`` row of ``dense_student_epochs``."""
        from ..compare.registry import get_method
        from ..study.config import parse_study

        rows: list[dict] = []
        if reference_rows and self.dense_student_epochs > 0:
            rows.append({"label": "dense student", "method": "kd", "epochs": self.dense_student_epochs})
        for entry in self.methods:
            for target in get_method(entry.name).plan(entry, self.targets):
                row = {"label": entry.label, "method": entry.name, "config_list": [dict(e) for e in entry.config_list],
                       "options": dict(entry.options)}
                if target is not None:
                    row.update(label=f"{entry.label} @ {target:g}", target=target)
                rows.append(row)
        data = {
            "name": name, "dataset": self.dataset, "teacher": self.teacher, "student": self.student,
            "teacher_epochs": self.teacher_epochs, "teacher_lr": self.teacher_lr,
            "teacher_lr_schedule": self.teacher_lr_schedule, "seeds": [self.seed],
            "train_fractions": [self.train_fraction], "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
            "finetune_lr_schedule": self.finetune_lr_schedule, "kd_weight": self.kd_weight, "temperature": self.temperature, "dense_student_epochs": self.dense_student_epochs,
            "settings": {"device": self.device}, "rows": rows,
        }
        for key in ("data_dir", "teacher_checkpoint", "image_size"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return parse_study(data)


_POSITIVE_INTS = ("epochs", "batch_size")
_NON_NEGATIVE_INTS = ("teacher_epochs", "dense_student_epochs", "seed", "num_workers")
_POSITIVE_FLOATS = ("teacher_lr", "lr", "temperature")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _yaml_float(value: Any) -> Any:
    """PyYAML reads ``1e-3`` (no dot) as a string; accept it as the number it spells."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_targets(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, (list, tuple)):
        value = [_yaml_float(v) for v in value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where} must be a non-empty list of sparsities in (0, 1), got {value!r}")
    for target in value:
        if not _is_number(target) or not 0 < target < 1:
            raise ConfigError(f"{where} must hold sparsities in (0, 1), got {target!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} lists a target twice: {list(value)}")
    return tuple(float(t) for t in value)


def _check_values(config: CompareConfig) -> None:
    for name in _POSITIVE_INTS + _NON_NEGATIVE_INTS:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if value < (1 if name in _POSITIVE_INTS else 0):
            raise ConfigError(f"{name} must be >= {1 if name in _POSITIVE_INTS else 0}, got {value}")
    for name in _POSITIVE_FLOATS:
        value = getattr(config, name)
        if not _is_number(value) or not value > 0:
            raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    if not _is_number(config.kd_weight) or config.kd_weight < 0:
        raise ConfigError(f"kd_weight must be a number >= 0, got {config.kd_weight!r}")
    if not _is_number(config.train_fraction) or not 0 < config.train_fraction <= 1:
        raise ConfigError(f"train_fraction must lie in (0, 1], got {config.train_fraction!r}")
    for name in ("dataset", "teacher", "student", "device"):
        if not isinstance(getattr(config, name), str) or not getattr(config, name):
            raise ConfigError(f"{name} must be a non-empty string, got {getattr(config, name)!r}")
    if config.device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {config.device!r}")
    from ..training.optim import check_lr_schedule

    check_lr_schedule(config.teacher_lr_schedule, "teacher_lr_schedule")
    check_lr_schedule(config.finetune_lr_schedule, "finetune_lr_schedule")
    if config.image_size is not None and (isinstance(config.image_size, bool) or not isinstance(config.image_size, int) or config.image_size < 1):
        raise ConfigError(f"image_size must be a positive integer, got {config.image_size!r}")
    _check_targets(config.targets, "targets")
    if not config.methods:
        raise ConfigError("methods must list at least one method, e.g. [{name: variational_student, config_list: [...]}]")


def _method_entry(raw: Any, index: int) -> MethodEntry:
    where = f"methods[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(METHOD_KEYS)}")
    if isinstance(raw.get("name"), str) and raw["name"]:
        where = f"{where} ({raw['name']})"
    unknown = sorted(set(raw) - set(METHOD_KEYS))
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; accepted: {', '.join(METHOD_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name must be a method name, e.g. variational_student or level")
    label = raw.get("label", name)
    if not isinstance(label, str) or not label:
        raise ConfigError(f"{where}.label must be a non-empty string")
    config_list = raw.get("config_list", [])
    if not isinstance(config_list, list) or not all(isinstance(e, Mapping) for e in config_list):
        raise ConfigError(f"{where}.config_list must be a list of mappings (NNI's config_list schema)")
    targets = raw.get("targets")
    if targets is not None:
        targets = _check_targets(targets, f"{where}.targets")
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}.options must be a mapping of setting names to values")
    return MethodEntry(name, label, tuple(copy.deepcopy(dict(e)) for e in config_list), targets, dict(options))


def _with_targets(entry: MethodEntry, targets: tuple[float, ...]) -> MethodEntry:
    """The entry with the top-level ``targets`` unless it chose its own (targets or a sparsity)."""
    if entry.targets is not None or any(sets_sparsity(item) for item in entry.config_list):
        return entry
    return dataclasses.replace(entry, targets=targets)


def compare_config_from_mapping(data: Mapping[str, Any], base_dir: Optional[Path] = None) -> CompareConfig:
    """Build and validate a :class:`CompareConfig`; relative paths are taken from ``base_dir``."""
    if not isinstance(data, Mapping):
        raise ConfigError("a compare config must be a mapping of setting names to values")
    known = [f.name for f in fields(CompareConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"unknown compare setting(s) {', '.join(unknown)}; accepted: {', '.join(known)}")
    values = dict(data)
    for key in ("data_dir", "teacher_checkpoint"):
        if values.get(key) is not None:
            if not isinstance(values[key], (str, Path)):
                raise ConfigError(f"{key} must be a path, got {values[key]!r}")
            path = Path(values[key]).expanduser()
            values[key] = path if path.is_absolute() or base_dir is None else base_dir / path
    methods = values.get("methods", [])
    if not isinstance(methods, list):
        raise ConfigError("methods must be a list of method entries")
    values["methods"] = tuple(_method_entry(raw, i) for i, raw in enumerate(methods))
    labels = [m.label for m in values["methods"]]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"method label(s) {', '.join(duplicates)} appear twice; give each entry its own label")
    for key in _POSITIVE_FLOATS + ("kd_weight", "train_fraction"):
        if key in values:
            values[key] = _yaml_float(values[key])
    if "targets" in values:
        values["targets"] = _check_targets(values["targets"], "targets")
        values["methods"] = tuple(_with_targets(entry, values["targets"]) for entry in values["methods"])
    config = CompareConfig(**values)
    _check_values(config)
    return config


def load_compare_config(path: Path) -> CompareConfig:
    """Read and validate a compare config (YAML or JSON)."""
    path = Path(path)
    data = read_yaml(path, "compare config")
    return compare_config_from_mapping(data, base_dir=path.resolve().parent)


__all__ = ["CompareConfig", "MethodEntry", "SPARSITY_KEYS", "sets_sparsity", "compare_config_from_mapping", "load_compare_config"]
