"""Translate an NNI config_list for the Variational Student into what NNI and the core need.

The user writes NNI's own schema (``op_types`` / ``op_names`` / ``op_names_re``, the
``exclude_*`` keys, ``sparse_threshold`` or ``sparse_ratio``, ``granularity``); the method's own
settings may go into ``target_settings['weight']``. Each entry becomes:

- a plan for the core: which modules :func:`vs_plugin.variationalize` converts, at which
  granularity (``default`` -> ``"weight"``, ``out_channel`` -> ``"channel"``) and with which layer
  settings (``init_log_sigma2``, ``kl``, ``log_alpha_clip``);
- an NNI entry naming exactly those modules by ``op_names``, so NNI wraps the variational
  layers (their ``weight`` is theta).

Meaning of the sparsity keys (per entry):

- ``sparse_threshold: t`` keeps a unit while log_alpha < t (the core's ``keep_mask``); default 3;
- ``sparse_ratio: r`` prunes the fraction r of units with the highest log_alpha (NNI's ratio
  rule, so ``min_sparse_ratio``/``max_sparse_ratio``/``global_group_id``/``dependency_group_id``
  work as in NNI's own pruners), except for one case: per-weight entries sharing a
  ``global_group_id`` without ``min_sparse_ratio`` / ``max_sparse_ratio`` are ranked by the core's
  rule (:func:`vs_plugin.pruning.global_keep_masks`: one global log alpha ranking, each layer
  keeping at least ``layer_floor`` of its uniform share, default 0.2, so no layer is emptied;
  ``layer_floor: 0`` is NNI's plain global ranking). The group lands exactly on r.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Optional, Sequence

import torch.nn as nn
from nni.compression.base.config import default_config_schema, select_modules_by_config
from schema import SchemaError

from vs_plugin.errors import ConfigError
from vs_plugin.layers import functional as vf
from vs_plugin.layers.base import VariationalLayer
from vs_plugin.layers.registry import kind_name_of, layer_kind_names
from vs_plugin.losses.objective import ObjectiveConfig
from vs_plugin.pruning import DEFAULT_LAYER_FLOOR
from vs_plugin.variationalize import head_name

#: NNI granularity -> core granularity. NNI's ``default`` means per weight for this pruner
#: (as for NNI's LevelPruner); ``out_channel`` puts one variational gate on each output channel.
GRANULARITY_TO_CORE = {"default": "weight", "out_channel": "channel"}
#: Keys that select modules; they are resolved here and replaced by ``op_names``.
SELECTION_KEYS = ("op_types", "op_names", "op_names_re", "exclude_op_names", "exclude_op_types", "exclude_op_names_re")
#: Per-layer settings of the core's variational layers, accepted in ``target_settings['weight']``.
LAYER_KEYS = ("init_log_sigma2", "min_init_log_alpha", "kl", "log_alpha_clip")
#: Loss settings (fields of :class:`ObjectiveConfig`), accepted in ``target_settings['weight']``.
OBJECTIVE_KEYS = tuple(f.name for f in fields(ObjectiveConfig))
#: NNI keys that only make sense when ranking by ratio.
RATIO_ONLY_KEYS = ("min_sparse_ratio", "max_sparse_ratio", "global_group_id", "dependency_group_id", "internal_metric_block")
#: Our ranking key (not NNI's): the per-layer floor of a global group ranked by the core's rule.
FLOOR_KEY = "layer_floor"
#: NNI keys this pruner does not support on the weight (it decides how masks apply).
UNSUPPORTED_WEIGHT_KEYS = ("align",)
TARGETS = ("weight", "bias")
#: Per-layer cap of a global per-channel ratio (``global_group_id`` with ``out_channel``) when the
#: entry sets no ``max_sparse_ratio`` (ours; torch-pruning's pruner uses the same 0.9).
DEFAULT_MAX_CHANNEL_RATIO = 0.9


@dataclass(frozen=True)
class LayerPlan:
    """What one config entry asks of the core.

    Attributes:
        names: modules to make variational, in registration order.
        granularity: core granularity (``"weight"`` or ``"channel"``).
        threshold: log_alpha threshold of the layers (used for masks in threshold mode).
        layer_settings: ``init_log_sigma2`` / ``kl`` / ``log_alpha_clip`` given in the entry.
        by_threshold: True when the entry prunes by ``sparse_threshold``, False by ``sparse_ratio``.
        ratio: the entry's ``sparse_ratio`` (None by threshold).
        global_group: the ``global_group_id`` ranked by the core's rule, or None (NNI's rule).
        layer_floor: that group's per-layer floor.
    """

    names: tuple[str, ...]
    granularity: str
    threshold: float
    layer_settings: Mapping[str, Any]
    by_threshold: bool
    ratio: Optional[float] = None
    global_group: Optional[Any] = None
    layer_floor: float = DEFAULT_LAYER_FLOOR


@dataclass
class TranslatedConfig:
    """The result of :func:`translate_config_list`."""

    plans: list[LayerPlan] = field(default_factory=list)
    nni_config_list: list[dict] = field(default_factory=list)
    objective_settings: dict[str, Any] = field(default_factory=dict)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


def _split_method_keys(settings: dict) -> tuple[dict, dict, dict]:
    """(NNI keys, layer keys, objective keys) of one target's settings."""
    nni_keys, layer, objective = {}, {}, {}
    for key, value in settings.items():
        if key in LAYER_KEYS:
            layer[key] = value
        elif key in OBJECTIVE_KEYS:
            objective[key] = value
        else:
            nni_keys[key] = value
    return nni_keys, layer, objective


def _validate_nni_schema(entry: dict, where: str) -> None:
    try:
        default_config_schema("pruning").validate(entry)
    except SchemaError as error:
        accepted = sorted(set(SELECTION_KEYS) | {"target_names", "target_settings", "sparse_ratio", "sparse_threshold",
                                                  "granularity", *RATIO_ONLY_KEYS})
        first = str(error).strip().splitlines()[-1] if str(error).strip() else "invalid entry"
        raise ConfigError(
            f"{where} does not follow NNI's config_list schema ({first}); accepted keys: {', '.join(accepted)}; "
            f"method settings go into target_settings['weight']: {', '.join(LAYER_KEYS + OBJECTIVE_KEYS)}"
        ) from None


def _coerce_sparsity(settings: dict, where: str) -> None:
    """NNI's schema wants floats; accept ints (``sparse_threshold: 3``) and check ranges."""
    for key in ("sparse_ratio", "sparse_threshold", "min_sparse_ratio", "max_sparse_ratio"):
        if key in settings and settings[key] is not None:
            settings[key] = _number(settings[key], f"{where}.{key}")
    ratio = settings.get("sparse_ratio")
    if ratio is not None and not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"{where}.sparse_ratio must lie in [0, 1], got {ratio}")


def _weight_settings(entry: dict, where: str) -> dict:
    """The weight target's effective settings: top-level shortcuts overridden by target_settings."""
    shortcut = {k: entry[k] for k in ("sparse_ratio", "sparse_threshold", "granularity", *RATIO_ONLY_KEYS, "apply_method") if k in entry}
    explicit = dict((entry.get("target_settings") or {}).get("weight") or {})
    merged = {**shortcut, **explicit}
    if merged.get("sparse_ratio") is not None and merged.get("sparse_threshold") is not None:
        raise ConfigError(f"{where}: give either sparse_ratio or sparse_threshold, not both")
    return merged


def select_modules(model: nn.Module, selection: Mapping[str, Any], where: str) -> dict[str, nn.Module]:
    """NNI's own module selection, with an error for ``op_names`` the model does not have.

    (NNI 3.0 raises a bare ``KeyError`` for those.)
    """
    known = {name for name, _ in model.named_modules(remove_duplicate=False)}
    missing = [name for name in selection.get("op_names") or [] if name not in known]
    if missing:
        raise ConfigError(f"{where}.op_names names modules {type(model).__name__} does not have: {', '.join(missing)}")
    modules, _, _ = select_modules_by_config(model, dict(selection))
    return modules


def _resolve_modules(model: nn.Module, entry: dict, where: str) -> list[str]:
    selection = {k: entry[k] for k in SELECTION_KEYS if k in entry}
    modules = select_modules(model, selection, where)
    order = {name: index for index, (name, _) in enumerate(model.named_modules())}
    names = sorted(modules, key=lambda n: order.get(n, len(order)))
    if not names:
        raise ConfigError(f"{where} selects no module of {type(model).__name__} ({selection})")
    bad = [
        f"{n} ({type(modules[n]).__name__})"
        for n in names
        if kind_name_of(modules[n]) is None and not isinstance(modules[n], VariationalLayer)
    ]
    if bad:
        raise ConfigError(
            f"{where} selects modules the Variational Student cannot make variational: {', '.join(bad)}; "
            f"convertible types: {', '.join(layer_kind_names())} (exact types, not subclasses)"
        )
    return names


def translate_config_list(
    model: nn.Module, config_list: Sequence[Mapping[str, Any]], objective: Optional[Mapping[str, Any]] = None
) -> TranslatedConfig:
    """Validate ``config_list`` against ``model`` (before it is made variational) and translate it.

    Args:
        model: the model to prune, with its plain layers.
        config_list: NNI config_list; see the module docstring.
        objective: loss settings given to the constructor; the same key in ``target_settings``
            must agree with it.

    Raises:
        ConfigError: on unknown keys, bad values, empty or overlapping selections, a gated head.
    """
    if not isinstance(config_list, (list, tuple)) or not config_list:
        raise ConfigError("config_list must be a non-empty list of dicts (NNI's schema)")
    result = TranslatedConfig(objective_settings=dict(objective or {}))
    objective_sources = {key: "the objective argument" for key in result.objective_settings}
    taken: dict[str, str] = {}
    head = head_name(model)
    for index, raw in enumerate(config_list):
        where = f"config_list[{index}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a dict, got {type(raw).__name__}")
        entry = copy.deepcopy(dict(raw))
        target_settings = entry.get("target_settings") or {}
        if not isinstance(target_settings, Mapping):
            raise ConfigError(f"{where}.target_settings must be a dict of target name -> settings")
        unknown_targets = sorted(set(target_settings) - set(TARGETS))
        if unknown_targets:
            raise ConfigError(f"{where}.target_settings names {', '.join(unknown_targets)}; this pruner handles {', '.join(TARGETS)}")
        layer_settings: dict = {}
        nni_target_settings = {}
        for target, settings in target_settings.items():
            if not isinstance(settings, Mapping):
                raise ConfigError(f"{where}.target_settings['{target}'] must be a dict")
            nni_keys, layer, objective_keys = _split_method_keys(dict(settings))
            if (layer or objective_keys) and target != "weight":
                raise ConfigError(f"{where}: method settings belong in target_settings['weight'], not ['{target}']")
            layer_settings.update(layer)
            for key, value in objective_keys.items():
                if key in result.objective_settings and result.objective_settings[key] != value:
                    raise ConfigError(
                        f"{where} sets {key}={value!r} but {objective_sources[key]} set {result.objective_settings[key]!r}; "
                        "loss settings apply to the whole model, give each once"
                    )
                result.objective_settings[key] = value
                objective_sources[key] = where
            _coerce_sparsity(nni_keys, f"{where}.target_settings['{target}']")
            nni_target_settings[target] = nni_keys
        if nni_target_settings:
            entry["target_settings"] = nni_target_settings
        _coerce_sparsity(entry, where)
        floor = _pop_floor(entry, where)
        weight = _weight_settings(entry, where)
        _validate_nni_schema(entry, where)

        granularity = weight.get("granularity", "default")
        if granularity not in GRANULARITY_TO_CORE:
            raise ConfigError(
                f"{where}.granularity must be one of {', '.join(GRANULARITY_TO_CORE)} for the Variational Student, got {granularity!r}"
            )
        for key in UNSUPPORTED_WEIGHT_KEYS:
            if key in weight:
                raise ConfigError(f"{where}: '{key}' is not supported on the weight by this pruner")
        if weight.get("apply_method", "mul") != "mul":
            raise ConfigError(f"{where}.apply_method must be 'mul' (masks multiply theta), got {weight['apply_method']!r}")
        by_threshold = weight.get("sparse_ratio") is None
        threshold = weight.get("sparse_threshold", vf.DEFAULT_THRESHOLD) if by_threshold else vf.DEFAULT_THRESHOLD
        if by_threshold:
            misplaced = [k for k in RATIO_ONLY_KEYS if weight.get(k) is not None]
            if misplaced:
                raise ConfigError(f"{where}: {', '.join(misplaced)} only work with sparse_ratio, not with sparse_threshold")
        target_names = entry.get("target_names")
        if target_names is not None and ("weight" not in target_names or not set(target_names) <= set(TARGETS)):
            raise ConfigError(f"{where}.target_names must be ['weight'] or ['weight', 'bias'], got {target_names!r}")
        core_granularity = GRANULARITY_TO_CORE[granularity]
        # Channel gates scale the bias too, so structured masks always cover it.
        targets = ["weight", "bias"] if core_granularity == "channel" else list(target_names or ["weight"])

        names = _resolve_modules(model, entry, where)
        for name in names:
            if name in taken:
                raise ConfigError(f"module {name!r} is selected by both {taken[name]} and {where}; select each module once")
            taken[name] = where
        if core_granularity == "channel" and head in names:
            raise ConfigError(
                f"{where}: granularity out_channel cannot gate the classifier head {head!r} (its outputs are the logits); "
                f"add it to exclude_op_names"
            )
        core_ranked = (not by_threshold and core_granularity == "weight" and weight.get("global_group_id") is not None
                       and weight.get("min_sparse_ratio") is None and weight.get("max_sparse_ratio") is None)
        if floor is not None and not core_ranked:
            raise ConfigError(
                f"{where}.{FLOOR_KEY} needs sparse_ratio with a global_group_id, per weight, without min/max_sparse_ratio"
            )
        result.plans.append(LayerPlan(
            tuple(names), core_granularity, float(threshold), layer_settings, by_threshold,
            ratio=None if by_threshold else float(weight["sparse_ratio"]),
            global_group=weight["global_group_id"] if core_ranked else None,
            layer_floor=DEFAULT_LAYER_FLOOR if floor is None else floor,
        ))

        sparsity = {"sparse_threshold": float(threshold)} if by_threshold else {"sparse_ratio": float(weight["sparse_ratio"])}
        nni_weight = {k: v for k, v in weight.items() if k in RATIO_ONLY_KEYS and v is not None}
        nni_weight.update(sparsity, granularity=granularity)
        if core_granularity == "channel" and "global_group_id" in nni_weight and "max_sparse_ratio" not in nni_weight:
            # A global channel ranking could otherwise remove every channel of a layer (NNI has no cap by default).
            nni_weight["max_sparse_ratio"] = DEFAULT_MAX_CHANNEL_RATIO
        result.nni_config_list.append({"op_names": names, "target_names": targets, "target_settings": {"weight": nni_weight}})
    _check_core_groups(result.plans)
    try:
        ObjectiveConfig(**result.objective_settings)
    except TypeError as error:
        raise ConfigError(f"unknown loss setting: {error}; accepted: {', '.join(OBJECTIVE_KEYS)}") from None
    return result


def _pop_floor(entry: dict, where: str) -> Optional[float]:
    """``layer_floor`` from the entry or its ``target_settings['weight']`` (removed: NNI does not know it)."""
    values = [entry.pop(FLOOR_KEY, None), ((entry.get("target_settings") or {}).get("weight") or {}).pop(FLOOR_KEY, None)]
    given = [v for v in values if v is not None]
    if not given:
        return None
    floor = _number(given[-1], f"{where}.{FLOOR_KEY}")
    if not 0.0 <= floor < 1.0:
        raise ConfigError(f"{where}.{FLOOR_KEY} must lie in [0, 1), got {floor}")
    return floor


def _check_core_groups(plans: Sequence[LayerPlan]) -> None:
    """Entries of one globally ranked group must share their ratio and floor."""
    groups: dict[Any, LayerPlan] = {}
    for plan in plans:
        if plan.global_group is None:
            continue
        first = groups.setdefault(plan.global_group, plan)
        if (plan.ratio, plan.layer_floor) != (first.ratio, first.layer_floor):
            raise ConfigError(
                f"entries of global_group_id {plan.global_group!r} give different sparse_ratio / {FLOOR_KEY} "
                f"({first.ratio}, {first.layer_floor}) and ({plan.ratio}, {plan.layer_floor}); a group has one of each"
            )
