"""torch-pruning baselines at a matched MAC budget: ``tp-magnitude``, ``tp-taylor``, ``tp-group-norm``.

Every baseline gets the same inputs as the structured Variational Student (a trained teacher, a
dense student initialised from it, the data, a MAC budget, an epoch budget) and spends the epoch
budget on the same CE + KD objective, on the core loop (:func:`vs_plugin.training.recipes.distill`):

- ``tp-magnitude``: group L2-norm importance (torch-pruning's ``MagnitudeImportance``, p=2,
  mean over the coupled layers, normalised by the group mean); prune once, then fine-tune for
  the whole budget.
- ``tp-taylor``: first-order Taylor importance |w * dL/dw| (Molchanov et al., CVPR 2019) from the
  cross-entropy gradients of ``taylor_batches`` training batches; prune once, then fine-tune.
- ``tp-group-norm``: DepGraph's group-norm regularised sparse training (Fang et al., CVPR 2023,
  torch-pruning's ``GroupNormPruner``, ``reg``) for ``sparse_fraction`` of the budget, prune by
  group L2 norm, fine-tune for the rest.

Channels are chosen by the same global ranking as the Variational Student
(:func:`.plan.ranked_plan`) and the fraction is bisected until the MACs meet the budget
(:func:`.macs.plan_for_macs`), so all methods end at the same MACs (within 0.5%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from vs_plugin.errors import ConfigError, UnknownNameError
from vs_plugin.losses.objective import ObjectiveConfig
from vs_plugin.metrics.accuracy import evaluate_accuracy
from vs_plugin.training.fit import each_epoch
from vs_plugin.training.recipes import accuracy_hook, distill

from .graph import ExampleInputs, build_pruner
from .importance import snapshot_scores
from .macs import count_macs_params, plan_for_macs
from .plan import PlanItem, apply_plan

#: Default weight of the group-norm penalty (torch-pruning's examples use 1e-4 to 5e-4).
GROUP_NORM_REG = 5e-4
#: Training batches whose CE gradients feed the Taylor importance.
TAYLOR_BATCHES = 8


@dataclass(frozen=True)
class TPBaseline:
    """One torch-pruning baseline.

    Attributes:
        name: registry name (``tp-...``).
        description: one line for listings and reports.
        importance: makes the importance that ranks channels.
        gradients: score from the gradients of a few training batches (Taylor).
        regularised: sparse training with ``GroupNormPruner.regularize`` before pruning.
    """

    name: str
    description: str
    importance: Callable[[], tp.importance.Importance]
    gradients: bool = False
    regularised: bool = False


TP_BASELINES: dict[str, TPBaseline] = {
    baseline.name: baseline
    for baseline in (
        TPBaseline("tp-magnitude", "torch-pruning group L2-magnitude importance, pruned once, then KD fine-tuning",
                   lambda: tp.importance.MagnitudeImportance(p=2)),
        TPBaseline("tp-taylor", "torch-pruning first-order Taylor importance, pruned once, then KD fine-tuning",
                   lambda: tp.importance.TaylorImportance(), gradients=True),
        TPBaseline("tp-group-norm", "torch-pruning group-norm regularised training (DepGraph), pruned, then KD fine-tuning",
                   lambda: tp.importance.GroupMagnitudeImportance(p=2), regularised=True),
    )
}


def get_baseline(name: str) -> TPBaseline:
    """The baseline called ``name``; a clear error lists the known ones."""
    try:
        return TP_BASELINES[name]
    except KeyError:
        raise UnknownNameError("torch-pruning baseline", name, list(TP_BASELINES)) from None


class GroupNormRegulariser(tp.pruner.GroupNormPruner):
    """torch-pruning's ``GroupNormPruner``, regularising only the groups its importance scores
    (groups touching an opaque layer have no score and would crash its ``regularize``)."""

    def update_regularizer(self) -> None:
        super().update_regularizer()
        self._groups = [group for group in self._groups if self.estimate_importance(group) is not None]


@dataclass
class BaselineResult:
    """A pruned and fine-tuned model and how it got there."""

    method: str
    model: nn.Module
    plan: list[PlanItem]
    ratio: float
    macs_before: int
    macs_after: int
    pruned_accuracy: Optional[float]
    history: dict = field(default_factory=dict)


def _accumulate_ce_gradients(model: nn.Module, batches: Iterable, count: int, device: torch.device) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    for index, (inputs, targets) in enumerate(batches):
        if index >= count:
            break
        F.cross_entropy(model(inputs.to(device)), targets.to(device)).backward()


def run_tp_baseline(
    method: str,
    student: nn.Module,
    teacher: Optional[nn.Module],
    train_loader: Iterable,
    example_inputs: ExampleInputs,
    *,
    target_macs_ratio: float,
    epochs: int,
    lr: float,
    objective: ObjectiveConfig,
    device: torch.device,
    test_loader: Optional[Iterable] = None,
    global_pruning: bool = True,
    max_layer_ratio: float = 0.9,
    sparse_fraction: float = 0.5,
    group_norm_reg: float = GROUP_NORM_REG,
    taylor_batches: int = TAYLOR_BATCHES,
    progress: bool = False,
    log: Optional[Callable[[str], None]] = None,
    on_epoch: Optional[Callable[[], None]] = None,
    finetune_lr_schedule: str = "constant",
) -> BaselineResult:
    """Prune ``student`` (in place) to ``target_macs_ratio`` of its MACs with a torch-pruning
    baseline and train it for ``epochs`` epochs in all (see the module docstring).

    Args:
        method: ``tp-magnitude``, ``tp-taylor`` or ``tp-group-norm``.
        student: the dense student (e.g. a copy of the teacher); pruned in place.
        teacher: the frozen teacher for the KD term (None: CE only, set ``kd_weight=0``).
        train_loader: training batches.
        example_inputs: a batch of one on ``device``.
        target_macs_ratio: pruned MACs / dense MACs (0.25 = 75% fewer).
        epochs: the epoch budget (sparse training + fine-tuning).
        lr: Adam learning rate.
        objective: loss weights (CE/KD/LP; KL and BSR are ignored).
        device: where to train.
        test_loader: when given, accuracy is recorded after pruning and each epoch.
        global_pruning / max_layer_ratio: channel ranking (see :func:`.plan.ranked_plan`).
        sparse_fraction: share of the budget spent on regularised training (group norm).
        group_norm_reg: the group-norm penalty weight.
        taylor_batches: batches of CE gradients for the Taylor importance.
        progress / log / on_epoch: progress bars, per-epoch line sink, per-epoch callback.
        finetune_lr_schedule: the fine-tune's learning rate after pruning: constant or cosine.
    """
    baseline = get_baseline(method)
    if not 0.0 < target_macs_ratio <= 1.0:
        raise ConfigError(f"target_macs_ratio must lie in (0, 1], got {target_macs_ratio}")
    if not 0.0 <= sparse_fraction <= 1.0:
        raise ConfigError(f"sparse_fraction must lie in [0, 1], got {sparse_fraction}")
    student.to(device)
    history: dict = {}
    loop = dict(progress=progress, log=log, after_epoch=each_epoch(on_epoch),
                evaluate=accuracy_hook(student, test_loader, device) if test_loader is not None else None)
    sparse_epochs = math.ceil(epochs * sparse_fraction) if baseline.regularised else 0
    if sparse_epochs:
        regulariser = build_pruner(
            student, example_inputs, baseline.importance(), pruner_class=GroupNormRegulariser, reg=group_norm_reg, warn=False
        )
        regulariser.update_regularizer()
        history["sparse"] = distill(
            student, teacher, train_loader, epochs=sparse_epochs, lr=lr, objective=objective, device=device,
            after_backward=lambda: regulariser.regularize(student), phase=f"{method} sparse", **loop,
        ).history
    if baseline.gradients:
        _accumulate_ce_gradients(student, train_loader, taylor_batches, device)
    scorer = build_pruner(student, example_inputs, baseline.importance())
    scores = snapshot_scores(scorer)
    macs_dense, _ = count_macs_params(student, example_inputs)
    search = plan_for_macs(
        student, example_inputs, scores, target_macs_ratio * macs_dense, global_pruning=global_pruning, max_layer_ratio=max_layer_ratio
    )
    apply_plan(student, scorer.DG, search.plan)
    student.zero_grad(set_to_none=True)
    pruned_accuracy = evaluate_accuracy(student, test_loader, device) if test_loader is not None else None
    history["finetune"] = distill(
        student, teacher, train_loader, epochs=epochs - sparse_epochs, lr=lr, objective=objective, device=device,
        lr_schedule=finetune_lr_schedule, phase=f"{method} finetune", **loop,
    ).history
    return BaselineResult(method, student, search.plan, search.ratio, search.macs_before, search.macs_after, pruned_accuracy, history)


__all__ = ["TPBaseline", "TP_BASELINES", "get_baseline", "GroupNormRegulariser", "BaselineResult", "run_tp_baseline"]
