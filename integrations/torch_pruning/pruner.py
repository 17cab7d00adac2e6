"""``VariationalStudentPruner``: the Variational Student as a torch-pruning pruner.

The student carries one Gaussian gate per output channel (core channel mode,
``variationalize(model, VariationalConfig(granularity="channel"))``). Training follows
torch-pruning's protocol for regularising pruners:

.. code-block:: python

    pruner = VariationalStudentPruner(student, example_inputs, teacher=teacher, num_train_samples=N,
                                      prune=PruneConfig(by="macs", target_macs_ratio=0.5))
    optimizer = torch.optim.Adam(pruner.parameter_groups(lr=1e-3, gate_lr=1e-2))
    for inputs, targets in loader:
        terms = pruner.objective(student(inputs), teacher(inputs), targets)  # CE + KD (+ LP)
        optimizer.zero_grad(); terms["loss"].backward()
        pruner.regularize()            # adds the KL/N term (and the BSR) to the gradients
        optimizer.step()
    pruner.step()                      # remove channels; then rebuild the optimizer

The data terms come from the core ``VariationalStudentObjective`` (with its KL and BSR weights
set to 0); ``regularize`` adds the core objective's own weight terms,
lambda_V * beta(step) * KL/max(N, N_0) + lambda_g * BSR (:meth:`VariationalStudentObjective.penalty`);
this adapter only tells the core BSR which input units survive each pruning step. ``step`` removes channels through the dependency graph
by log alpha threshold, by ratio (global or per layer) or down to a MAC budget, in one or several
steps (``iterative_steps``), pruning each gated layer's gates with its weights so training goes on.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch_pruning as tp
from torch import Tensor
from torch_pruning.pruner import function

from vs_plugin.errors import ConfigError
from vs_plugin.layers.base import VariationalLayer
from vs_plugin.layers.channel import ChannelGateLayer
from vs_plugin.losses.kl import KLWarmup
from vs_plugin.losses.objective import ObjectiveConfig, VariationalStudentObjective
from vs_plugin.variationalize import VariationalConfig, variationalize

from .bound import bounded_analysis
from .gates import GATE_PARAMETERS, GATED_IN_CHANNEL_FUNCTIONS
from .graph import ExampleInputs, plain_forward, pruner_arguments
from .importance import GuardedImportance, MaskImportance, VariationalImportance, snapshot_scores, unclipped_log_alpha
from .macs import count_macs_params, plan_for_macs
from .plan import PlanItem, apply_plan, dead_channel_plan, min_positions, plan_to_json, ranked_plan, removed_channels

PRUNE_BY = ("threshold", "ratio", "macs")
IN_CHANNEL_FUNCTIONS = (function.prune_conv_in_channels, function.prune_linear_in_channels) + GATED_IN_CHANNEL_FUNCTIONS


@dataclass(frozen=True)
class PruneConfig:
    """How :class:`VariationalStudentPruner` removes channels.

    Attributes:
        by: ``"threshold"`` (channels whose gate log alpha is at or above the threshold in every
            coupled layer: the masked student, exactly), ``"ratio"`` (the lowest-ranked fraction
            of channel positions) or ``"macs"`` (the lowest-ranked channels until the MACs fall
            to ``target_macs_ratio`` of the model's MACs when the pruner was made).
        threshold: log alpha threshold; None uses each layer's own (``VariationalConfig.threshold``).
        pruning_ratio: by="ratio": fraction of positions removed after the last step.
        target_macs_ratio: by="macs": pruned MACs / initial MACs after the last step (0.25 = 75% fewer).
        iterative_steps: number of ``step()`` calls to reach the target (linear schedule).
        global_pruning: rank all layers together (log alpha is comparable across layers), else
            remove the same fraction from each layer.
        layer_ratios: by="ratio": layer name -> its own final ratio.
        max_layer_ratio: a layer loses at most this fraction of its channels (over all steps).
        reduction: how coupled layers' log alphas combine (see :class:`VariationalImportance`).
        round_to: by="ratio"/"macs": every pruned layer keeps a multiple of this many channels.
    """

    by: str = "threshold"
    threshold: Optional[float] = None
    pruning_ratio: float = 0.5
    target_macs_ratio: float = 0.5
    iterative_steps: int = 1
    global_pruning: bool = True
    layer_ratios: Optional[Mapping[str, float]] = None
    max_layer_ratio: float = 0.9
    reduction: str = "max"
    round_to: Optional[int] = None

    def __post_init__(self) -> None:
        if self.by not in PRUNE_BY:
            raise ConfigError(f"prune by must be one of {', '.join(PRUNE_BY)}, got {self.by!r}")
        if not 0.0 <= self.pruning_ratio < 1.0:
            raise ConfigError(f"pruning_ratio must lie in [0, 1), got {self.pruning_ratio}")
        if not 0.0 < self.target_macs_ratio <= 1.0:
            raise ConfigError(f"target_macs_ratio must lie in (0, 1], got {self.target_macs_ratio}")
        if not (isinstance(self.iterative_steps, int) and self.iterative_steps >= 1):
            raise ConfigError(f"iterative_steps must be an integer >= 1, got {self.iterative_steps!r}")
        if not 0.0 < self.max_layer_ratio < 1.0:
            raise ConfigError(f"max_layer_ratio must lie in (0, 1), got {self.max_layer_ratio}")
        for name, ratio in (self.layer_ratios or {}).items():
            if not 0.0 <= ratio < 1.0:
                raise ConfigError(f"layer_ratios[{name!r}] must lie in [0, 1), got {ratio}")
        if self.layer_ratios and self.by != "ratio":
            raise ConfigError("layer_ratios apply to by='ratio' only")
        VariationalImportance(self.reduction)  # validates the name
        if self.round_to is not None and not (isinstance(self.round_to, int) and self.round_to >= 1):
            raise ConfigError(f"round_to must be an integer >= 1 or None, got {self.round_to!r}")


@dataclass(frozen=True)
class PruneStep:
    """What one ``step()`` removed: the plan, each layer's removed output channels (numbered as
    before the step) and the MACs and parameters (as plain layers) around it."""

    step: int
    plan: list[PlanItem]
    removed: dict[str, list[int]]
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int


class VariationalStudentPruner(tp.pruner.BasePruner):
    """A torch-pruning ``BasePruner`` that trains and prunes a channel-gated Variational Student.

    Args:
        model: the student. If it has no channel gates yet it is made variational in place with
            ``variational`` (default: channel mode on every Conv/Linear but the head).
        example_inputs: a batch of one, for tracing and MAC counts.
        num_train_samples: N of the KL/N term.
        teacher: the frozen teacher (KD, LP and BSR terms).
        objective: loss weights (core ``ObjectiveConfig``).
        warmup: KL warm-up beta(step) over ``regularize`` calls; None keeps beta = 1.
        prune: how to remove channels.
        variational: used only when ``model`` has no gates yet; must be channel granularity.
        ignored_layers: modules (torch-pruning's convention) or module names whose output
            channels are kept (the head always is).
        pruning_ratio, iterative_steps, global_pruning, round_to, max_pruning_ratio: torch-pruning's
            constructor arguments; each sets the :class:`PruneConfig` field of the same meaning
            (``pruning_ratio`` alone implies ``by="ratio"``; ``max_pruning_ratio`` is
            ``max_layer_ratio``). Given together with ``prune``, a value that contradicts it is an error.
        num_heads: ``{qkv_layer: heads}`` as torch-pruning takes it; vs-plugin finds timm-style
            attention itself, so this only checks the layers are the model's.
        prune_num_heads: torch-pruning's whole-head pruning; refused (vs-plugin prunes head
            dimensions, the same positions in every head).

    Raises:
        ConfigError: for weight-granularity students and invalid settings.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: ExampleInputs,
        *,
        num_train_samples: int,
        teacher: Optional[nn.Module] = None,
        objective: Optional[ObjectiveConfig] = None,
        warmup: Optional[KLWarmup] = None,
        prune: Optional[PruneConfig] = None,
        variational: Optional[VariationalConfig] = None,
        ignored_layers: Sequence[Union[str, nn.Module]] = (),
        pruning_ratio: Optional[float] = None,
        iterative_steps: Optional[int] = None,
        global_pruning: Optional[bool] = None,
        round_to: Optional[int] = None,
        max_pruning_ratio: Optional[float] = None,
        num_heads: Optional[Mapping[nn.Module, int]] = None,
        prune_num_heads: bool = False,
    ) -> None:
        _ensure_channel_gates(model, variational)
        objective = objective or ObjectiveConfig()
        self.prune_config = _prune_config(
            prune, pruning_ratio=pruning_ratio, iterative_steps=iterative_steps, global_pruning=global_pruning,
            round_to=round_to, max_layer_ratio=max_pruning_ratio,
        )
        if prune_num_heads:
            raise ConfigError("prune_num_heads=True is not supported: VariationalStudentPruner prunes head dimensions (the same positions in every head), not whole heads")
        _check_num_heads(model, num_heads)
        ignored_layers = _layer_names(model, ignored_layers)
        self.teacher = teacher
        self.warmup = warmup
        self.num_train_samples = num_train_samples
        #: The whole core objective (data terms, KL and BSR): what a loop that is not torch-pruning's uses.
        self.variational_objective = VariationalStudentObjective(
            model, teacher, objective, num_train_samples=num_train_samples, warmup=warmup, check_updates=0
        )
        data_terms = dataclasses.replace(objective, kl_weight=0.0, bsr_weight=0.0)
        #: The objective's data terms (CE, KD, LP); ``regularize`` adds the core objective's KL and BSR.
        self.objective = VariationalStudentObjective(
            model, teacher if data_terms.uses_teacher else None, data_terms, num_train_samples=num_train_samples
        )
        self.example_inputs = example_inputs
        self.ignored_layer_names = tuple(ignored_layers)
        arguments = pruner_arguments(model, VariationalImportance(self.prune_config.reduction), self.ignored_layer_names)
        with bounded_analysis(model, "building the pruner's groups"):
            with plain_forward(model):
                super().__init__(model, example_inputs, iterative_steps=self.prune_config.iterative_steps, **arguments)
            self.initial_macs = count_macs_params(model, example_inputs)[0]
            self.floors = min_positions(self, self.prune_config.max_layer_ratio)
        self.history: list[PlanItem] = []
        self.steps: list[PruneStep] = []
        self.regularize_calls = 0
        self._bsr_setup()

    # -- regularisation (torch-pruning protocol) -------------------------------------------
    def _bsr_setup(self) -> None:
        regulariser = self.variational_objective.bsr
        self._kept_inputs: dict[str, Tensor] = {}
        for pair in regulariser.pairs if regulariser is not None else ():
            self._kept_inputs[pair.student] = torch.arange(self.model.get_submodule(pair.student).weight.shape[1])

    def update_regularizer(self) -> None:
        """Re-index the teacher's BSR block statistics to the student's surviving input units."""
        if self.variational_objective.bsr is not None:
            self.variational_objective.bsr.keep_inputs(self._kept_inputs)

    def _track_inputs(self, group: tp.Group) -> None:
        """Follow which of the original input units each BSR-paired layer keeps."""
        if not self._kept_inputs:
            return
        names = {module: name for name, module in self.model.named_modules()}
        for dep, idxs in group:
            name = names.get(dep.target.module)
            if dep.handler not in IN_CHANNEL_FUNCTIONS or name not in self._kept_inputs:
                continue
            width = dep.target.module.weight.shape[1]
            grouped = isinstance(dep.target.module, nn.modules.conv._ConvNd) and dep.target.module.groups > 1
            removed = {int(i) % width if grouped else int(i) for i in idxs}
            kept = self._kept_inputs[name]
            self._kept_inputs[name] = kept[[j for j in range(width) if j not in removed]]

    def bsr(self) -> Tensor:
        """The core objective's BSR (unweighted), teacher blocks restricted to the surviving input units."""
        return self.variational_objective.regularisers()[1]

    def regularize(self, model: Optional[nn.Module] = None, loss: Optional[Tensor] = None) -> Tensor:
        """Add the gradient of lambda_V * beta * KL/N + lambda_g * BSR to the parameters' ``.grad``.

        Call it between ``loss.backward()`` and ``optimizer.step()``; beta advances by one step
        per call. Returns the penalty's value (detached).

        Args:
            model: the pruner's model (or None); another model is an error.
            loss: unused; accepted for torch-pruning's ``regularize(model, loss)`` signature.
        """
        if model is not None and model is not self.model:
            raise ConfigError("regularize() got a model other than the one this pruner was built for")
        beta = self.warmup.beta(self.regularize_calls) if self.warmup is not None else 1.0
        self.regularize_calls += 1
        penalty = self.variational_objective.penalty(beta)
        if penalty.requires_grad:
            penalty.backward()
        return penalty.detach()

    def parameter_groups(self, lr: float, gate_lr: Optional[float] = None) -> list[dict]:
        """Optimizer parameter groups: the gates (``gate_lr``, default ``lr``) and everything else."""
        gates, others = [], []
        for module in self.model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                is_gate = isinstance(module, ChannelGateLayer) and name in GATE_PARAMETERS
                (gates if is_gate else others).append(parameter)
        return [{"params": others, "lr": lr}, {"params": gates, "lr": gate_lr if gate_lr is not None else lr}]

    # -- pruning ----------------------------------------------------------------------------
    def threshold_masks(self) -> dict[nn.Module, Tensor]:
        """Output channels each gated layer keeps at the threshold (log alpha < threshold)."""
        threshold = self.prune_config.threshold
        return {
            layer: unclipped_log_alpha(layer).detach().cpu() < (layer.threshold if threshold is None else threshold)
            for layer in self.model.modules()
            if isinstance(layer, ChannelGateLayer)
        }

    def plan_step(self) -> list[PlanItem]:
        """The channels the next ``step()`` removes (nothing is changed)."""
        config = self.prune_config
        step = self.current_step + 1
        if config.by == "threshold":
            scorer = GuardedImportance(MaskImportance(self.threshold_masks()), self.importance.blocked)
            return dead_channel_plan(self, lambda scores: scores < 0.5, importance=scorer)
        if config.by == "ratio":
            done = config.pruning_ratio * (step - 1) / config.iterative_steps
            goal = config.pruning_ratio * step / config.iterative_steps
            relative = 1.0 - (1.0 - goal) / (1.0 - done)
            layer_ratios = None
            if config.layer_ratios:
                layer_ratios = {
                    name: 1.0 - (1.0 - r * step / config.iterative_steps) / (1.0 - r * (step - 1) / config.iterative_steps)
                    for name, r in config.layer_ratios.items()
                }
            return ranked_plan(
                self, relative, global_pruning=config.global_pruning, layer_ratios=layer_ratios,
                max_layer_ratio=config.max_layer_ratio, floors=self.floors, round_to=config.round_to,
            )
        target = self.initial_macs * (1.0 - (1.0 - config.target_macs_ratio) * step / config.iterative_steps)
        search = plan_for_macs(
            self.model, self.example_inputs, snapshot_scores(self), target,
            global_pruning=config.global_pruning, max_layer_ratio=config.max_layer_ratio, ignored_layers=self.ignored_layer_names,
            floors=self.floors, round_to=config.round_to,
        )
        return search.plan

    def step(self, interactive: bool = False) -> None:
        """Remove this step's channels (weights and gates) from the model, in place.

        Parameters are replaced: build a new optimizer afterwards.

        Raises:
            ConfigError: for ``interactive=True`` (gates must be pruned with their weights).
        """
        if interactive:
            raise ConfigError("interactive pruning is not supported: the gates must be pruned with the weights; call step()")
        if self.current_step >= self.iterative_steps:
            warnings.warn(f"all {self.iterative_steps} pruning steps are done; nothing pruned", stacklevel=2)
            return
        plan = self.plan_step()
        macs_before, params_before = count_macs_params(self.model, self.example_inputs)
        removed = removed_channels(self.model, self.DG, plan)
        applied = apply_plan(self.model, self.DG, plan, on_group=self._track_inputs)
        self.current_step += 1
        self.history.extend(applied)
        macs_after, params_after = count_macs_params(self.model, self.example_inputs)
        self.steps.append(PruneStep(self.current_step, applied, removed, macs_before, macs_after, params_before, params_after))
        self.update_regularizer()

    def pruning_history(self) -> list[list]:
        """Every removal so far as torch-pruning's history entries ``[layer, is_out, indices]``."""
        return plan_to_json(self.history)


def _prune_config(prune: Optional[PruneConfig], **tp_arguments) -> PruneConfig:
    """``prune`` with torch-pruning's constructor arguments applied (None = not given)."""
    given = {k: v for k, v in tp_arguments.items() if v is not None}
    if prune is None:
        if "pruning_ratio" in given:
            given.setdefault("by", "ratio")
        return PruneConfig(**given)
    clashes = [f"{k}={v!r} (prune has {getattr(prune, k)!r})" for k, v in given.items() if getattr(prune, k) != v]
    if clashes:
        raise ConfigError(f"arguments contradict prune=PruneConfig(...): {', '.join(clashes)}; give each setting once")
    return prune


def _layer_names(model: nn.Module, layers: Sequence[Union[str, nn.Module]]) -> tuple[str, ...]:
    """Module names for ``ignored_layers`` given as modules (torch-pruning's way) or names."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    names = {id(m): n for n, m in model.named_modules()}
    out = []
    for layer in layers:
        if isinstance(layer, str):
            out.append(layer)
        elif isinstance(layer, nn.Module):
            if id(layer) not in names:
                raise ConfigError(f"ignored_layers holds a {type(layer).__name__} that is not a module of this model (pass the model's own modules or their names)")
            out.append(names[id(layer)])
        else:
            raise ConfigError(f"ignored_layers must hold modules or module names, got {type(layer).__name__}")
    return tuple(out)


def _check_num_heads(model: nn.Module, num_heads: Optional[Mapping[nn.Module, int]]) -> None:
    modules = {id(m) for m in model.modules()}
    for layer, heads in (num_heads or {}).items():
        if id(layer) not in modules:
            raise ConfigError(f"num_heads names a {type(layer).__name__} that is not a module of this model")
        found = next((m.num_heads for m in model.modules() if getattr(m, "qkv", None) is layer), None)
        if found is not None and found != heads:
            raise ConfigError(f"num_heads gives {heads} heads for a qkv layer whose attention module has {found}")


def _ensure_channel_gates(model: nn.Module, variational: Optional[VariationalConfig]) -> None:
    layers = [m for m in model.modules() if isinstance(m, VariationalLayer)]
    if any(not isinstance(m, ChannelGateLayer) for m in layers):
        raise ConfigError("the student has weight-granularity variational layers; the structured pruner needs granularity='channel'")
    if variational is not None and variational.granularity != "channel":
        raise ConfigError(f"the structured pruner needs VariationalConfig(granularity='channel'), got {variational.granularity!r}")
    if not layers:
        variationalize(model, variational or VariationalConfig(granularity="channel"))


__all__ = ["PRUNE_BY", "PruneConfig", "PruneStep", "VariationalStudentPruner"]
