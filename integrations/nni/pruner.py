"""``VariationalStudentPruner``: the Variational Student as an NNI 3.0 pruner.

Hegde et al., "Variational Student", ICASSP 2020: a sparse variational student trained with
knowledge distillation from a frozen teacher, a KL term and a Block Sparse Regulariser (plus the
optional locality-preserving loss of Chen et al. 2021). The math lives in the core
(:mod:`vs_plugin.layers`, :mod:`vs_plugin.losses`); this class only follows NNI's compressor
contract:

1. the config_list (NNI's schema) is resolved to module names on the original model, and exactly
   those modules are made variational (:func:`vs_plugin.variationalize`);
2. NNI wraps the variational layers (``op_names``), so their ``weight`` is theta;
3. training goes through the user's evaluator: the loss is patched with KD + KL/N + BSR (+ LP),
   the variational parameters (log sigma^2, or the channel gates) join the optimizer;
4. after ``training_steps`` optimizer steps (or every ``interval_steps`` when scheduled by
   ``AGPPruner`` / ``LinearPruner``) masks are generated from log_alpha, and ``compress()``
   returns ``(model, {module_name: {target: mask}})`` with the trained weights in the model.

Example::

    evaluator = TorchEvaluator(training_func, nni.trace(torch.optim.Adam)(model.parameters(), lr=1e-3), training_step)
    pruner = VariationalStudentPruner(model, [{"op_types": ["Linear"], "sparse_threshold": 3.0}], evaluator,
                                      teacher, training_steps=3000, num_train_samples=len(train_set))
    _, masks = pruner.compress()
    pruner.unwrap_model()      # plain layers again, pruned weights exactly zero (as bake_masks(model, masks))
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
import torch.nn as nn
from nni.compression.base.compressor import Compressor, Pruner
from nni.compression.base.target_space import PruningTargetSpace
from nni.compression.base.wrapper import ModuleWrapper
from nni.compression.pruning.tools import generate_sparsity
from nni.compression.utils.evaluator import Evaluator
from torch import Tensor

from vs_plugin.errors import ConfigError
from vs_plugin.layers.base import VariationalLayer
from vs_plugin.layers.registry import layer_kind_names
from vs_plugin.losses.kl import KLWarmup
from vs_plugin.losses.kl_controller import KLController
from vs_plugin.losses.objective import ObjectiveConfig, VariationalStudentObjective
from vs_plugin.pruning import global_keep_masks
from vs_plugin.training.optim import adam
from vs_plugin.variationalize import INIT_LOG_SIGMA2_SCRATCH, VariationalConfig, finalize, variationalize

from .compat import (
    check_evaluator,
    expand_op_types,
    join_param_groups,
    record_optimizer_parameters,
    register_variational_settings,
)
from .config import LayerPlan, translate_config_list
from .evaluator import infer_num_train_samples
from .loss_patch import BatchTargets, TeacherPredict, VariationalLossPatch, default_batch_targets, default_teacher_predict
from .masks import bake_masks, bias_mask_from_weight, current_theta, expand_channel_mask

_logger = logging.getLogger(__name__)
_MASKS = Dict[str, Dict[str, Tensor]]
#: Initial log sigma^2 of the variational layers (theta starts at the model's weights). Our choice:
#: Sparse VD's -10 even for trained weights. The core's reference setting for trained weights,
#: -15, sparsifies too slowly for a pruner's usual budget: on digits, from a trained dense
#: student, 30 epochs reached 37% sparsity with -15 and 95% with -10 (97.5% accuracy).
#: ``target_settings: {weight: {init_log_sigma2: -15}}`` restores it.
DEFAULT_INIT_LOG_SIGMA2 = INIT_LOG_SIGMA2_SCRATCH
#: Default KL warm-up: beta ramps 0 -> 1 over this fraction of training_steps (the core's default
#: is 10 of 30 epochs).
DEFAULT_WARMUP_FRACTION = 1 / 3


def _exact_pattern(name: str) -> str:
    """An fnmatch pattern matching exactly ``name`` (module names rarely hold ``*?[``, but may)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _objective_mapping(objective: Union[ObjectiveConfig, Mapping[str, Any], None]) -> dict:
    if objective is None:
        return {}
    if isinstance(objective, ObjectiveConfig):
        return objective.to_dict()
    if isinstance(objective, Mapping):
        return dict(objective)
    raise ConfigError(f"objective must be an ObjectiveConfig or a mapping of its fields, got {type(objective).__name__}")


def _variational_config(plan: LayerPlan) -> VariationalConfig:
    """The core's config for one plan (validates the layer settings)."""
    settings = {"init_log_sigma2": DEFAULT_INIT_LOG_SIGMA2, **plan.layer_settings}
    return VariationalConfig(
        granularity=plan.granularity,
        threshold=plan.threshold,
        layer_types=layer_kind_names(),
        include=tuple(_exact_pattern(n) for n in plan.names),
        **settings,
    )


def _make_variational(model: nn.Module, plan: LayerPlan, config: VariationalConfig) -> None:
    """Convert the plan's modules (in place) and check each became a variational layer of its granularity."""
    variationalize(model, config)
    for name in plan.names:
        layer = model.get_submodule(name)
        if not isinstance(layer, VariationalLayer) or layer.granularity != plan.granularity:
            found = getattr(layer, "granularity", "plain")
            raise ConfigError(f"module {name!r} is already {found}, cannot make it {plan.granularity}-variational")
        layer.threshold = plan.threshold


class VariationalStudentPruner(Pruner):
    """Sparse variational student distilled from a frozen teacher, as an NNI pruner.

    Args:
        model: the student to prune (trained or not); selected layers are made variational in place.
        config_list: NNI config_list (see :mod:`vs_plugin.integrations.nni.config`): module selection,
            ``sparse_threshold`` (log_alpha threshold, default 3) or ``sparse_ratio``, ``granularity``
            ``default`` (per weight) or ``out_channel`` (one gate per output channel); method settings
            (loss fields of :class:`vs_plugin.ObjectiveConfig`, ``init_log_sigma2``, ``kl``,
            ``log_alpha_clip``) may go into ``target_settings['weight']``.
        evaluator: an NNI ``TorchEvaluator`` (``LightningEvaluator`` is refused: broken with Lightning 2.x).
        teacher: the frozen teacher (put in eval mode); None only when the loss needs no teacher.
        training_steps: optimizer steps to train before the masks are generated.
        num_train_samples: N, the number of training samples (the KL term is divided by N); None
            reads it from the evaluator's data (:func:`~.evaluator.infer_num_train_samples`) and
            says how to pass it when it cannot.
        objective: loss settings, an :class:`ObjectiveConfig` or a mapping of its fields.
        kl_warmup: KL warm-up in optimizer steps; default a linear ramp over the first third of
            ``training_steps``; ``KLWarmup(end_step=0)`` switches it off.
        teacher_predict: ``(batch, teacher) -> teacher logits``; default ``teacher(batch[0])``.
        batch_targets: ``(batch) -> labels``; default ``batch[1]``.
        variational_lr: None adds the variational parameters to the user's optimizer (same
            learning rate and schedule); a number trains them with their own Adam at that rate.
        kl_controller: when every entry prunes by the same ``sparse_ratio``, adapt the KL weight
            during training so the share of units above the log alpha threshold follows a ramp to
            that ratio (:mod:`vs_plugin.losses.kl_controller`; off when an NNI scheduler such as
            ``AGPPruner`` drives the pruner, whose own ramp rules then). False keeps it fixed.
        existed_wrappers: used by ``from_compressor``.
    """

    def __init__(
        self,
        model: nn.Module,
        config_list: List[Dict],
        evaluator: Evaluator,
        teacher: Optional[nn.Module],
        training_steps: int,
        *,
        num_train_samples: Optional[int] = None,
        objective: Union[ObjectiveConfig, Mapping[str, Any], None] = None,
        kl_warmup: Optional[KLWarmup] = None,
        teacher_predict: Optional[TeacherPredict] = None,
        batch_targets: Optional[BatchTargets] = None,
        variational_lr: Optional[float] = None,
        kl_controller: bool = True,
        existed_wrappers: Optional[Dict[str, ModuleWrapper]] = None,
    ) -> None:
        evaluator = check_evaluator(evaluator)
        if isinstance(training_steps, bool) or not isinstance(training_steps, int) or training_steps < 1:
            raise ConfigError(f"training_steps must be a positive integer, got {training_steps!r}")
        if teacher is not None and not isinstance(teacher, nn.Module):
            raise ConfigError(f"teacher must be an nn.Module or None, got {type(teacher).__name__}")
        if teacher is model:
            raise ConfigError("the teacher must be another module than the student being pruned")
        if not isinstance(kl_controller, bool):
            raise ConfigError(f"kl_controller must be True or False, got {kl_controller!r}")
        if variational_lr is not None and not (isinstance(variational_lr, (int, float)) and variational_lr > 0):
            raise ConfigError(f"variational_lr must be a positive number or None, got {variational_lr!r}")
        if num_train_samples is None:
            num_train_samples = infer_num_train_samples(evaluator)
        if isinstance(num_train_samples, bool) or not isinstance(num_train_samples, int) or num_train_samples < 1:
            raise ConfigError(f"num_train_samples must be a positive integer (N of the KL/N term), got {num_train_samples!r}")
        translated = translate_config_list(model, config_list, _objective_mapping(objective))
        objective_config = ObjectiveConfig(**translated.objective_settings)
        if teacher is None and objective_config.uses_teacher:
            raise ConfigError("kd_weight > 0 or lp_gamma > 0 needs a teacher; pass one or set both to 0")
        wrapped = [n for plan in translated.plans for n in plan.names if n in (existed_wrappers or {})]
        if wrapped:
            raise ConfigError(
                f"modules {', '.join(wrapped)} are already wrapped by another NNI compressor; build the "
                "VariationalStudentPruner first and fuse the others with Other.from_compressor(pruner, ...)"
            )
        variational_configs = [_variational_config(plan) for plan in translated.plans]
        # Record the optimizer's parameter names on the plain model, before its layers are replaced.
        record_optimizer_parameters(evaluator, model)
        for plan, variational_config in zip(translated.plans, variational_configs):
            _make_variational(model, plan, variational_config)
        register_variational_settings()
        super().__init__(model, translated.nni_config_list, evaluator, existed_wrappers)
        self.evaluator: Evaluator
        self.user_config_list = config_list
        self.plans = translated.plans
        self.teacher = teacher
        self.training_steps = training_steps
        # `interval_steps` and `total_times` make the pruner schedulable by AGPPruner / LinearPruner.
        self.interval_steps = training_steps
        self.total_times: int = 1
        self.variational_lr = variational_lr
        self.teacher_predict = teacher_predict or default_teacher_predict
        self.batch_targets = batch_targets or default_batch_targets
        self.kl_warmup = kl_warmup or KLWarmup(end_step=int(training_steps * DEFAULT_WARMUP_FRACTION))
        needs_teacher = objective_config.uses_teacher or objective_config.bsr_weight > 0
        ratios = {plan.ratio for plan in self.plans}
        controller = None
        if kl_controller and len(ratios) == 1 and None not in ratios and 0 < next(iter(ratios)) < 1:
            controller = KLController(next(iter(ratios)), training_steps, threshold=self.plans[0].threshold)
        self.objective = VariationalStudentObjective(
            model, teacher if needs_teacher else None, objective_config, num_train_samples=num_train_samples,
            kl_controller=controller,
        )
        self._by_threshold = {name: plan.by_threshold for plan in self.plans for name in plan.names}
        self._configured_threshold = {name: plan.threshold for plan in self.plans for name in plan.names}
        self.loss_patch: Optional[VariationalLossPatch] = None
        self.global_step = 0

    @classmethod
    def from_compressor(
        cls,
        compressor: Compressor,
        new_config_list: List[Dict],
        teacher: Optional[nn.Module],
        training_steps: int,
        evaluator: Optional[Evaluator] = None,
        **options: Any,
    ) -> "VariationalStudentPruner":
        """Build on another compressor's model, wrappers and evaluator (see NNI's ``from_compressor``).

        Only modules the other compressor has not wrapped can be made variational; to fuse with a
        distiller, build this pruner first and call ``Distiller.from_compressor(pruner, ...)``.
        """
        return super().from_compressor(
            compressor, new_config_list, teacher=teacher, training_steps=training_steps, evaluator=evaluator, **options
        )

    # -- NNI's pruner interface ---------------------------------------------------------------
    def _set_default_sparse_granularity(self, target_space: PruningTargetSpace) -> None:
        return None  # NNI's "default" granularity means per weight here, as for LevelPruner

    def _variational_wrappers(self) -> dict[str, ModuleWrapper]:
        return {name: self._module_wrappers[name] for name in self._target_spaces}

    def _collect_data(self) -> _MASKS:
        """log_alpha of every unit (weight, or output channel) at theta's current values."""
        data = {}
        for name, wrapper in self._variational_wrappers().items():
            with current_theta(wrapper) as layer:
                data[name] = {"weight": layer.log_alpha().detach()}
        return data

    def _calculate_metrics(self, data: _MASKS) -> _MASKS:
        """NNI prunes the smallest metric first: the metric is -log_alpha, in the target's shrunk shape."""
        metrics = {}
        for name, targets in data.items():
            weight = self._target_spaces[name]["weight"].target
            metric = -targets["weight"]
            if metric.dim() == 1 and weight.dim() > 1:  # per-channel log_alpha, (C,) -> (C, 1, ...)
                metric = metric.view(-1, *([1] * (weight.dim() - 1)))
            metrics[name] = {"weight": metric}
        return metrics

    def _generate_sparsity(self, metrics: _MASKS) -> _MASKS:
        masks: _MASKS = defaultdict(dict)
        for plan_names, ratio, floor in self._core_ranked_groups():
            scores = {n: metrics[n]["weight"] for n in plan_names}  # -log alpha: higher is kept
            for name, keep in global_keep_masks(scores, ratio, floor).items():
                weight = self._target_spaces[name]["weight"].target
                masks[name]["weight"] = (keep if keep.shape == weight.shape else keep.expand_as(weight)).to(weight.dtype)
        ratio_spaces = {n: {"weight": ts["weight"]} for n, ts in self._target_spaces.items()
                        if not self._by_threshold[n] and n not in masks}
        if ratio_spaces:
            for name, targets in generate_sparsity({n: metrics[n] for n in ratio_spaces}, ratio_spaces).items():
                masks[name].update(targets)
        wrappers = self._variational_wrappers()
        for name, spaces in self._target_spaces.items():
            weight = spaces["weight"].target
            if self._by_threshold[name]:
                with current_theta(wrappers[name]) as layer:
                    keep = layer.keep_mask()
                masks[name]["weight"] = (keep if keep.shape == weight.shape else expand_channel_mask(keep, weight)).to(weight.dtype)
            bias_space = spaces.get("bias")
            if bias_space is not None and bias_space.target is not None:
                masks[name]["bias"] = bias_mask_from_weight(masks[name]["weight"], weight.shape).to(bias_space.target.dtype)
        return masks

    def _core_ranked_groups(self) -> list[tuple[list[str], float, float]]:
        """(layer names, ratio, floor) of each global group ranked by the core's rule (config.py)."""
        groups: dict = {}
        for plan in self.plans:
            if plan.global_group is not None:
                names = [n for n in plan.names if n in self._target_spaces]
                groups.setdefault(plan.global_group, ([], plan.ratio, plan.layer_floor))[0].extend(names)
        return list(groups.values())

    # -- training through the evaluator ----------------------------------------------------------
    def _check_not_threshold_scheduled(self) -> None:
        for name, spaces in self._target_spaces.items():
            if self._by_threshold[name] and spaces["weight"].sparse_threshold != self._configured_threshold[name]:
                raise ConfigError(
                    "AGPPruner/LinearPruner scale sparse_threshold from 0, which for a log_alpha threshold means pruning "
                    "more, not less; schedule the VariationalStudentPruner with sparse_ratio instead"
                )

    def _variational_parameters(self) -> dict[nn.Module, list[nn.Parameter]]:
        """log sigma^2 (or the gate parameters) of each wrapped layer, by its NNI wrapper: not in the user's optimizer."""
        in_optimizers = {
            id(p) for optimizer in (getattr(self.evaluator, "_optimizers", None) or []) for g in optimizer.param_groups for p in g["params"]
        }
        params = {}
        for wrapper in self._variational_wrappers().values():
            own = [p for pname, p in wrapper.module.named_parameters(recurse=False) if pname not in ("weight", "bias")]
            own = [p for p in own if id(p) not in in_optimizers and p.requires_grad]
            if own:
                params[wrapper] = own
        return params

    def _register_variational_optimization(self, evaluator: Evaluator) -> None:
        params = self._variational_parameters()
        if not params:
            return
        if self.variational_lr is None:
            optimizers = getattr(evaluator, "_optimizers", None) or []
            if any(g.get("weight_decay", 0) for o in optimizers for g in o.param_groups):
                _logger.warning(
                    "the optimizer has weight decay, which also pulls log sigma^2 towards 0 (more noise); "
                    "pass variational_lr=... to train the variational parameters with their own optimizer"
                )
            join_param_groups(optimizers, params)
            return
        optimizer = adam([p for group in params.values() for p in group], lr=float(self.variational_lr))
        evaluator.patch_optimizer_step(before_step_tasks=[optimizer.step], after_step_tasks=[optimizer.zero_grad])

    def _register_trigger(self, evaluator: Evaluator) -> None:
        self.global_step = 0
        self._steps_since_masks = 0
        self._remaining_times = self.total_times

        def after_optimizer_step() -> None:
            self.global_step += 1
            self._steps_since_masks += 1
            if self._steps_since_masks == self.interval_steps and self._remaining_times > 0:
                self.update_masks(self.generate_masks())
                self._remaining_times -= 1
                self._steps_since_masks = 0
                _logger.debug("%s generated masks, %d times remaining", type(self).__name__, self._remaining_times)

        evaluator.patch_optimizer_step(before_step_tasks=[], after_step_tasks=[after_optimizer_step])

    def _fuse_preprocess(self, evaluator: Evaluator) -> None:
        self._check_not_threshold_scheduled()
        if self.total_times != 1:  # scheduled (AGPPruner, LinearPruner): the scheduler's ramp rules
            self.objective.kl_controller = None
        device = next(self.bound_model.parameters()).device
        self.objective.to(device)
        if self.teacher is not None:
            self.teacher.eval()
        self._register_variational_optimization(evaluator)
        self.loss_patch = VariationalLossPatch(
            self.bound_model, self.teacher, self.objective, self.kl_warmup, lambda: self.global_step,
            self.teacher_predict, self.batch_targets,
        )
        evaluator.patch_loss(self.loss_patch)
        self._register_trigger(evaluator)

    def _fuse_postprocess(self, evaluator: Evaluator) -> None:
        if self._remaining_times == self.total_times:
            _logger.warning(
                "training stopped after %d optimizer steps, before the %d at which masks are generated; generating them now",
                self.global_step, self.interval_steps,
            )
            self.update_masks(self.generate_masks())
        if self.loss_patch is not None:
            self.loss_patch.remove()

    def _single_compress(self, max_steps: Optional[int], max_epochs: Optional[int]) -> None:
        if max_steps is None and max_epochs is None:
            max_steps = self.training_steps
        self._fusion_compress(max_steps, max_epochs)

    def unwrap_model(self, keep_variational: bool = False) -> None:
        """Unwrap NNI's wrappers and give back plain modules (NNI users' expectation).

        The variational layers become plain layers holding ``weight * mask`` (the latest masks;
        without masks yet, their eval-time weights), so a fresh model loads the ``state_dict``
        and NNI's distillers match the layers by ``op_types`` again.

        Args:
            keep_variational: leave the variational layers in place (to keep training them);
                :func:`~.masks.bake_masks` turns them plain later.
        """
        masks = {}
        for name, wrapper in self._module_wrappers.items():
            for target, space in wrapper.pruning_target_spaces.items():
                if space.mask is not None:
                    masks.setdefault(name, {})[target] = space.mask.detach().clone()
        if any(getattr(wrapper.module, "_nni_wrapper", None) is wrapper for wrapper in self._module_wrappers.values()):
            super().unwrap_model()
        else:  # a compressor fused after this one (distiller.unwrap_model()) unwrapped the shared wrappers
            self._is_wrapped = False
        # NNI's from_compressor unwraps the compressor to rewrap its modules for the next one:
        # those modules must stay (variational) in place, and a distiller's op_types must find them.
        caller = sys._getframe(1)
        if caller.f_code.co_name == "from_compressor":
            self._expose_op_types(caller.f_locals.get("cls"), caller.f_locals.get("new_config_list"))
            return
        if keep_variational:
            return
        bake_masks(self.bound_model, masks)
        finalize(self.bound_model)

    def _expose_op_types(self, next_class: Any, config_list: Any) -> None:
        """A distiller fused after this pruner (``Distiller.from_compressor(pruner, config_list, ...)``)
        selects modules by class name: let its ``op_types: ['Linear']`` also name the variational
        layers that replaced ``nn.Linear`` (:func:`.compat.expand_op_types`). Pruners and quantizers
        fused after this one are left to select by ``op_names``."""
        if getattr(next_class, "mode", None) == "distillation" and isinstance(config_list, list):
            expand_op_types(config_list, self.bound_model)

    def compress(self, max_steps: Optional[int] = None, max_epochs: Optional[int] = None):
        """Train through the evaluator, then return ``(model, masks)``.

        Without arguments it trains ``training_steps`` optimizer steps (as NNI's SlimPruner does).
        """
        return super().compress(max_steps, max_epochs)


__all__ = ["VariationalStudentPruner", "DEFAULT_INIT_LOG_SIGMA2"]
