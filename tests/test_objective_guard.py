"""The own-training-loop traps: an optimizer created before variationalize, and a warm-up that restarts each epoch."""

import pytest
import torch
import torch.nn as nn

import vs_plugin
from vs_plugin.errors import ConfigError, TrainingStalled


def data(n=64):
    inputs = torch.randn(n, 8)
    return inputs, (inputs[:, 0] > 0).long()


def student():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def train(model, optimizer, objective, steps, **call):
    inputs, targets = data()
    for _ in range(steps):
        terms = objective(model(inputs), None, targets, **call)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    return terms


def objective_for(model, **options):
    config = vs_plugin.ObjectiveConfig(kd_weight=0.0)
    return vs_plugin.VariationalStudentObjective(model, None, config, num_train_samples=64, **options)


def test_an_optimizer_created_before_variationalize_is_an_error_within_20_steps():
    model = student()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)  # the trap: before variationalize
    vs_plugin.variationalize(model)
    objective = objective_for(model)
    with pytest.raises(TrainingStalled, match="create the optimizer after it"):
        train(model, optimizer, objective, 25)
    assert objective.global_step == 20


def test_an_optimizer_created_after_variationalize_trains_without_complaint():
    model = student()
    vs_plugin.variationalize(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    objective = objective_for(model)
    with torch.no_grad():  # evaluation calls neither count nor trigger the check
        for _ in range(30):
            objective(model(data()[0]), None, data()[1])
    assert objective.global_step == 0
    train(model, optimizer, objective, 40)
    assert objective.global_step == 40


def test_a_channel_student_with_a_stale_optimizer_is_caught_too():
    model = student()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    vs_plugin.variationalize(model, vs_plugin.VariationalConfig(granularity="channel"))
    with pytest.raises(TrainingStalled):
        train(model, optimizer, objective_for(model, check_updates=5), 10)


def test_the_check_can_be_switched_off_and_rejects_bad_values():
    model = student()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    vs_plugin.variationalize(model)
    train(model, optimizer, objective_for(model, check_updates=0), 30)  # no error
    with pytest.raises(ConfigError, match="check_updates"):
        objective_for(model, check_updates=-1)
    with pytest.raises(ConfigError, match="warmup"):
        objective_for(model, warmup=10)


def test_the_warm_up_follows_the_objectives_own_step_across_epochs():
    """beta over a 3-epoch warm-up with 5 steps per epoch reaches 1 in epoch 4, whatever the loop's enumerate says."""
    model = student()
    vs_plugin.variationalize(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    warmup = vs_plugin.KLWarmup.from_epochs(3, steps_per_epoch=5)
    objective = objective_for(model, warmup=warmup)
    inputs, targets = data()
    betas = []
    for _epoch in range(4):
        for _step in range(5):
            terms = objective(model(inputs), None, targets)
            betas.append(float((terms["loss"].detach() - terms["ce"]) / terms["kl"]))
            optimizer.zero_grad()
            terms["loss"].backward()
            optimizer.step()
    expected = [min(step / 15, 1.0) for step in range(20)]
    assert betas == pytest.approx(expected, abs=1e-5)
    assert betas[-1] == pytest.approx(1.0)
    # an explicit beta still wins
    terms = objective(model(inputs), None, targets, beta=0.0)
    assert float(terms["loss"]) == pytest.approx(float(terms["ce"]))
