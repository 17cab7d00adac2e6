"""The one training loop (vs_plugin.training.fit) and the objective's weight terms used by adapters."""

import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

from vs_plugin import ObjectiveConfig, variationalize
from vs_plugin.data.loaders import make_loader
from vs_plugin.losses.objective import VariationalStudentObjective
from vs_plugin.training.fit import fit
from vs_plugin.training.recipes import distill, train_classifier


def batches(n=40, batch=8):
    torch.manual_seed(0)
    x, y = torch.randn(n, 6), torch.randint(0, 3, (n,))
    return make_loader(TensorDataset(x, y), batch, shuffle=True, seed=0)


def cross_entropy(model):
    return lambda batch, step: {"loss": nn.functional.cross_entropy(model(batch[0]), batch[1])}


def test_hooks_run_in_order_with_evaluation_every_eval_every_epochs():
    model, loader = nn.Linear(6, 3), batches()
    calls, history = [], [{"epoch": 1}]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    replacement = torch.optim.SGD(model.parameters(), lr=0.1)

    def measure(state, record):
        calls.append(("measure", state.epoch, "test_accuracy" in record.extra))
        if state.epoch == 2:
            state.optimizer = replacement

    def after(state, record):
        calls.append(("after", state.epoch, len(state.history)))

    state = fit(model, optimizer, loader, cross_entropy(model), epochs=4, start_epoch=1, history=history, eval_every=2,
                evaluate=lambda: {"test_accuracy": 0.5}, measure=[measure], after_epoch=[after])
    assert calls == [("measure", 2, True), ("after", 2, 2), ("measure", 3, False), ("after", 3, 3),
                     ("measure", 4, True), ("after", 4, 4)]
    assert state.history is history and [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert state.optimizer is replacement and state.global_step == 4 * len(loader)


def test_max_steps_ends_in_a_partial_epoch():
    model, loader = nn.Linear(6, 3), batches()
    steps = []
    step = cross_entropy(model)
    fit(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, lambda b, s: steps.append(s) or step(b, s), epochs=3, max_steps=7)
    assert steps == list(range(7))  # 5 batches per epoch: one full epoch and 2 steps of the next


def test_recipes_train_and_keep_masked_weights_at_zero():
    teacher, loader = nn.Linear(6, 3), batches()
    state = train_classifier(teacher, loader, epochs=2, lr=1e-2, device=torch.device("cpu"))
    assert len(state.history) == 2 and not teacher.training
    student = nn.Sequential(nn.Linear(6, 3))
    mask = torch.ones(3, 6)
    mask[:, :3] = 0
    distill(student, teacher, loader, epochs=2, lr=1e-2, objective=ObjectiveConfig(kd_weight=1.0), device=torch.device("cpu"),
            masks={"0": {"weight": mask}})
    assert torch.all(student[0].weight[:, :3] == 0) and torch.all(student[0].weight[:, 3:] != 0)


def test_penalty_is_the_losss_weight_terms_and_bsr_follows_kept_inputs():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    student = variationalize(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)))
    config = ObjectiveConfig(kd_weight=0.0, kl_weight=2.0, bsr_weight=0.5)
    objective = VariationalStudentObjective(student, teacher, config, num_train_samples=10, check_updates=0)
    x, y = torch.randn(4, 6), torch.randint(0, 3, (4,))
    terms = objective(student(x), None, y, beta=0.5)
    assert float(objective.penalty(0.5).detach()) == pytest.approx(float((terms["loss"] - terms["ce"]).detach()), rel=1e-5)
    full = float(objective.regularisers()[1])
    objective.bsr.keep_inputs({"2": torch.tensor([0, 1])})  # the second layer now reads units 0 and 1 only
    assert objective.bsr.teacher_stat_1.numel() == 2
    assert float(objective.regularisers()[1]) != pytest.approx(full)
