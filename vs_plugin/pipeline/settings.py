"""Every setting of a compression run, validated, in one flat dataclass.

The command line and ``vs_plugin.compress(**settings)`` share it; ``report.json`` stores it under
``config`` so a run can be repeated with ``vs-plugin compress --config report.json``.
The fields of the variational config (:class:`VariationalConfig`) and of the objective
(:class:`ObjectiveConfig`) are declared once, in those dataclasses: :class:`CompressSettings`
takes them from there (:func:`_fields_of`), flat, and builds the two configs from its values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Mapping, Optional, TypeVar

from ..data.transforms import AugmentSettings
from ..errors import ConfigError
from ..losses.objective import ObjectiveConfig
from ..training.optim import check_lr_schedule
from ..variationalize import INIT_LOG_SIGMA2_PRETRAINED, INIT_LOG_SIGMA2_SCRATCH, VariationalConfig

DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("off", "bf16", "fp16")
#: "variational": one variational phase, pruned by the log alpha threshold (or the target).
#: "three-phase": dense KD warm start -> variational phase -> prune -> masked KD fine-tune.
RECIPES = ("auto", "variational", "three-phase")
#: How a target is reached in the variational phase (see CompressSettings' docstring).
PRUNE_SCHEDULES = ("gradual", "end")

#: Settings added after runs and studies were recorded, with the value such a run used: a
#: checkpoint or ``report.json`` without the key continues (``--resume``) or repeats (``--config
#: report.json``) as it ran, not with today's default (``finetune_lr_schedule`` changed it), and a
#: study records a row's setting only when it differs (:mod:`vs_plugin.study.keys`), so finished
#: studies still match.
RECORDED_BEFORE = {
    "prune_schedule": "end", "prune_ramp": 2 / 3, "variational_kd_weight": None, "teacher_lr_schedule": "constant",
    "finetune_lr_schedule": "constant",
}


def with_recorded_defaults(record: Mapping[str, Any]) -> dict:
    """A saved settings record with :data:`RECORDED_BEFORE`'s values for the settings it lacks."""
    return {**RECORDED_BEFORE, **dict(record)}
#: Settings that may be None (unset) as well as a number.
OPTIONAL_NUMBERS = ("init_log_sigma2", "min_init_log_alpha", "target_sparsity", "variational_kd_weight")
#: Fields of the nested configs that are no flat setting (the BSR's layer mapping is found from the models).
NOT_SETTINGS = ("bsr_mapping",)


Settings = TypeVar("Settings", bound="FlatSettings")


class FlatSettings:
    """Mapping in and out of a frozen settings dataclass (this one and the structured run's)."""

    WHAT: ClassVar[str] = "setting"  # names the settings in errors

    @classmethod
    def from_mapping(cls: type[Settings], values: Mapping[str, Any]) -> Settings:
        """Settings from a mapping (lists where the default is a tuple); unknown keys are an error
        naming the accepted ones."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown {cls.WHAT}(s) {', '.join(unknown)}; accepted: {', '.join(sorted(known))}")
        return cls(**{k: tuple(v) if isinstance(v, list) and isinstance(known[k].default, tuple) else v for k, v in values.items()})

    def replace(self: Settings, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The settings as JSON values (tuples as lists): report.json's ``config``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _fields_of(*configs: type, after: str, skip: tuple[str, ...] = ()):
    """Class decorator (below ``@dataclass``): give the class every field of the dataclasses
    ``configs`` that it does not declare itself (a declaration there overrides the type and
    default), with the same type and default, placed after its field ``after``."""

    def decorate(cls: type) -> type:
        own = dict(cls.__dict__.get("__annotations__", {}))
        taken = {}
        for config in configs:
            for config_field in fields(config):
                if config_field.name in own or config_field.name in skip or config_field.name in taken:
                    continue
                taken[config_field.name] = config_field.type
                if config_field.default is dataclasses.MISSING:
                    setattr(cls, config_field.name, dataclasses.field(default_factory=config_field.default_factory))
                else:  # every default of the configs is immutable (numbers, strings, tuples, None)
                    setattr(cls, config_field.name, config_field.default)
        names = list(own)
        at = names.index(after) + 1
        cls.__annotations__ = {**{n: own[n] for n in names[:at]}, **taken, **{n: own[n] for n in names[at:]}}
        return cls

    return decorate


@dataclass(frozen=True)
@_fields_of(VariationalConfig, ObjectiveConfig, after="eval_every", skip=NOT_SETTINGS)
class CompressSettings(FlatSettings):
    """Settings of ``vs-plugin compress`` / ``vs_plugin.compress``.

    Training: ``epochs`` (student), ``teacher_epochs`` (only when the teacher is trained here),
    ``batch_size``, ``lr``, ``teacher_lr``, ``seed``, ``device``, ``train_fraction`` (low-data
    runs), ``num_workers``, ``progress``, ``amp`` (``bf16`` autocast for forward passes;
    parameters, KL and BSR stay fp32), ``cache_teacher`` (compute the frozen teacher's outputs once
    per training sample when the data is in memory; the same numbers, less time), ``eval_every``
    (measure test accuracy and sparsity every this many epochs, and after the last one; long
    low-data runs spend most of their time evaluating otherwise), ``compile_kl`` (run the
    per-weight variational pass as one ``torch.compile`` loop where it pays, see
    :mod:`vs_plugin.layers.compiled`; False: eager, the same numbers). ``batch_size`` is the global batch: under torchrun each
    of the N processes takes batch_size / N. Sparsification: see :class:`VariationalConfig`
    (``init_log_sigma2=None`` picks -15 for a student copied from the teacher, -10 from scratch;
    either is raised per unit so that log alpha starts at ``min_init_log_alpha``, default -6, or above).
    Sparsification and loss fields are those of :class:`VariationalConfig` and
    :class:`ObjectiveConfig` (declared there, with their defaults), except the two declared here.
    Loss: see :class:`ObjectiveConfig`; ``kl_warmup_epochs`` ramps the KL weight from 0 to 1
    after ``kl_hold_epochs`` epochs at 0. Measurement: ``threshold_sweep`` lists other log alpha
    thresholds at which the trained student's accuracy and sparsity are also reported (one
    training, a whole accuracy-sparsity curve).

    Recipe: ``recipe="auto"`` (the default) is the three-phase recipe with a ``target_sparsity``
    and one variational phase without (``"variational"``); ``recipe="three-phase"`` splits ``epochs`` by ``phase_split`` (warm start, variational
    phase, fine-tune; the warm start is skipped, its epochs given to the variational phase, when
    the student is a copy of the trained teacher); ``target_sparsity`` prunes by one global log
    alpha ranking to exactly that fraction of the variational layers' units, each layer keeping
    at least ``layer_floor`` of its uniform share ``(1 - target) * units`` (at least one).
    ``prune_schedule`` says how the variational phase gets there: ``"end"`` (the default)
    prunes once after the phase, with ``kl_controller`` adapting the KL weight during it so the
    threshold sparsity tracks the target (:mod:`vs_plugin.losses.kl_controller`; ``kl_weight`` is
    its starting point; the controller applies to ``"end"`` only); ``"gradual"`` masks the units
    of highest log alpha on the cubic schedule over the first ``prune_ramp`` of the phase, with
    the KL at its plain weight (:mod:`vs_plugin.pruning.gradual`: level with gradual magnitude
    pruning on the paper MLP, worse on digits' short phases). ``variational_kd_weight`` (unset:
    ``kd_weight``) is the KD weight of the variational (or gate) phase alone; the warm start and
    the fine-tune keep ``kd_weight``. ``finetune_lr_schedule`` is the learning rate of the masked
    fine-tune (three-phase and structured recipes): ``"cosine"`` (the default), annealed per epoch
    towards 0 over the fine-tune's epochs, or ``"constant"`` (``lr`` to the last step; what every
    run recorded without this setting did, see :data:`RECORDED_BEFORE`). ``kl_min_samples``
    tempers the KL on small data (see
    :class:`ObjectiveConfig`).
    """

    # training
    epochs: int = 60
    teacher_epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    teacher_lr: float = 1e-3
    teacher_lr_schedule: str = "constant"
    seed: int = 0
    device: str = "auto"
    train_fraction: float = 1.0
    num_workers: int = 0
    progress: bool = True
    amp: str = "off"
    cache_teacher: bool = True
    eval_every: int = 1
    # sparsification and loss: every field of VariationalConfig and ObjectiveConfig (but
    # NOT_SETTINGS) is taken from there by _fields_of, here; only these differ from the configs:
    init_log_sigma2: Optional[float] = None  # None: picked by how the student starts (variational_config)
    kl_min_samples: int = 1000  # tempers the KL on small data (ObjectiveConfig's own default, 0, is the exact ELBO)
    kl_warmup_epochs: float = 10.0
    kl_hold_epochs: float = 0.0
    # recipe
    recipe: str = "auto"
    phase_split: tuple[float, ...] = (0.25, 0.5, 0.25)
    target_sparsity: Optional[float] = None
    layer_floor: float = 0.2
    prune_schedule: str = "end"
    prune_ramp: float = 2 / 3
    kl_controller: bool = True
    variational_kd_weight: Optional[float] = None  # None: kd_weight in every phase
    finetune_lr_schedule: str = "cosine"
    # measurement
    threshold_sweep: tuple[float, ...] = ()
    # image data: timm's training augmentation (folder:<path>, and resized in-memory data for a
    # timm/torchvision teacher); see vs_plugin.data.transforms.AugmentSettings
    # (defaults live in AugmentSettings, once)
    augment: str = AugmentSettings.mode
    hflip: float = AugmentSettings.hflip
    color_jitter: float = AugmentSettings.color_jitter
    crop_scale_min: float = AugmentSettings.crop_scale_min
    auto_augment: Optional[str] = AugmentSettings.auto_augment
    random_erasing: float = AugmentSettings.random_erasing
    channels_last: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        for name in ("epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("teacher_epochs", "num_workers", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "teacher_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.train_fraction <= 1:
            raise ConfigError(f"train_fraction must lie in (0, 1], got {self.train_fraction}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for value in self.threshold_sweep:
            if not -self.log_alpha_clip < value <= self.log_alpha_clip:
                raise ConfigError(f"threshold_sweep values must lie in (-{self.log_alpha_clip}, {self.log_alpha_clip}], got {value}")
        if self.kl_warmup_epochs < 0 or self.kl_hold_epochs < 0:
            raise ConfigError("kl_warmup_epochs and kl_hold_epochs must be >= 0")
        check_lr_schedule(self.teacher_lr_schedule, "teacher_lr_schedule")
        check_lr_schedule(self.finetune_lr_schedule, "finetune_lr_schedule")
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
        if len(self.phase_split) != 3 or any(f < 0 for f in self.phase_split) or self.phase_split[1] <= 0:
            raise ConfigError(
                f"phase_split must be three fractions >= 0 (warm start, variational, fine-tune) with a variational "
                f"share > 0, got {list(self.phase_split)}"
            )
        if self.target_sparsity is not None and not 0 <= self.target_sparsity < 1:
            raise ConfigError(f"target_sparsity must lie in [0, 1), got {self.target_sparsity}")
        if not 0 <= self.layer_floor < 1:
            raise ConfigError(f"layer_floor must lie in [0, 1), got {self.layer_floor}")
        if self.prune_schedule not in PRUNE_SCHEDULES:
            raise ConfigError(f"prune_schedule must be one of {', '.join(PRUNE_SCHEDULES)}, got {self.prune_schedule!r}")
        if self.variational_kd_weight is not None and not self.variational_kd_weight >= 0:
            raise ConfigError(f"variational_kd_weight must be >= 0 or unset (kd_weight), got {self.variational_kd_weight}")
        if not 0 < self.prune_ramp <= 1:
            raise ConfigError(f"prune_ramp must lie in (0, 1] (a fraction of the variational phase), got {self.prune_ramp}")
        self.phase_epochs(warm_start=True)
        # Build the nested configs once so that their own checks run now.
        self.variational_config(student_from_teacher=False)
        self.objective_config()
        self.augment_settings()

    @property
    def resolved_recipe(self) -> str:
        """The recipe a run follows: ``auto`` is three-phase with a target, one variational phase without."""
        if self.recipe == "auto":
            return "three-phase" if self.target_sparsity is not None else "variational"
        return self.recipe

    def phase_epochs(self, warm_start: bool) -> tuple[int, int, int]:
        """Epochs of (warm start, variational phase, fine-tune); ``warm_start=False`` gives the
        warm start's share to the variational phase. The one-phase recipe is (0, epochs, 0)."""
        if self.resolved_recipe == "variational":
            return 0, self.epochs, 0
        total = sum(self.phase_split)
        warm = round(self.epochs * self.phase_split[0] / total) if warm_start else 0
        finetune = round(self.epochs * self.phase_split[2] / total)
        variational = self.epochs - warm - finetune
        if variational < 1:
            raise ConfigError(
                f"epochs={self.epochs} split by phase_split={list(self.phase_split)} leaves no variational epoch; "
                "give more epochs or a larger variational share"
            )
        return warm, variational, finetune

    def _values_of(self, config: type) -> dict:
        """This settings' values of the fields of the dataclass ``config``."""
        return {f.name: getattr(self, f.name) for f in fields(config) if f.name not in NOT_SETTINGS}

    def variational_config(self, student_from_teacher: bool) -> VariationalConfig:
        values = self._values_of(VariationalConfig)
        if values["init_log_sigma2"] is None:
            values["init_log_sigma2"] = INIT_LOG_SIGMA2_PRETRAINED if student_from_teacher else INIT_LOG_SIGMA2_SCRATCH
        return VariationalConfig(**values)

    def augment_settings(self) -> AugmentSettings:
        return AugmentSettings(
            mode=self.augment, hflip=self.hflip, color_jitter=self.color_jitter, crop_scale_min=self.crop_scale_min,
            auto_augment=self.auto_augment, random_erasing=self.random_erasing,
        )

    def objective_config(self) -> ObjectiveConfig:
        return ObjectiveConfig(**self._values_of(ObjectiveConfig))

    def variational_objective_config(self) -> ObjectiveConfig:
        """The objective of the variational (or gate) phase: ``kd_weight`` is ``variational_kd_weight`` when set."""
        config = self.objective_config()
        if self.variational_kd_weight is None:
            return config
        return dataclasses.replace(config, kd_weight=self.variational_kd_weight)


_NUMBER = (int, float)


def _check_types(settings: CompressSettings) -> None:
    """Reject values of the wrong type (a bool is not a number here) with the field's name."""
    for field in fields(settings):
        value = getattr(settings, field.name)
        default = field.default
        if value is None and (default is None or field.name in OPTIONAL_NUMBERS):
            continue
        if field.name in ("layer_types", "include", "exclude"):
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{field.name} must be a list of strings, got {value!r}")
            object.__setattr__(settings, field.name, tuple(value))
            continue
        if field.name in ("threshold_sweep", "phase_split"):
            if isinstance(value, (str, bytes)) or not all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"{field.name} must be a list of numbers, got {value!r}")
            object.__setattr__(settings, field.name, tuple(float(v) for v in value))
            continue
        if field.name == "lp_sigma2":
            ok = value == "median" or (isinstance(value, _NUMBER) and not isinstance(value, bool))
        elif field.name in ("lp_student_layer", "lp_teacher_layer", "auto_augment"):
            ok = isinstance(value, str)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float) or field.name in OPTIONAL_NUMBERS:
            ok = isinstance(value, _NUMBER) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f"setting {field.name} has the wrong type: {value!r}")
        if isinstance(value, _NUMBER) and not isinstance(value, bool) and value != value:
            raise ConfigError(f"setting {field.name} is NaN")
