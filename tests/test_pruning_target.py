"""Pruning to a target: exact global counts, per-layer floors, the cubic schedule, masked fine-tuning."""

import math

import pytest
import torch
import torch.nn as nn

from vs_plugin import VariationalConfig, variationalize
from vs_plugin.errors import ConfigError
from vs_plugin.pruning import (
    apply_keep_masks,
    cubic_sparsity,
    global_keep_masks,
    keep_count,
    log_alpha_scores,
    magnitude_scores,
)


def test_global_ranking_keeps_exactly_the_target_count_with_ties():
    scores = {"a": torch.zeros(10, 10), "b": torch.ones(5, 7)}  # every score tied within a layer
    for sparsity in (0.0, 0.5, 0.9, 0.98, 0.999):
        masks = global_keep_masks(scores, sparsity, floor=0.0)
        assert sum(int(m.sum()) for m in masks.values()) == keep_count(135, sparsity)
        assert masks["a"].shape == (10, 10) and masks["b"].shape == (5, 7)


def test_global_ranking_prefers_high_scores_across_layers():
    scores = {"a": torch.tensor([0.1, 0.2, 5.0, 6.0]), "b": torch.tensor([3.0, 4.0, 0.3, 0.0])}
    masks = global_keep_masks(scores, 0.5, floor=0.0)
    assert masks["a"].tolist() == [False, False, True, True]
    assert masks["b"].tolist() == [True, True, False, False]


def test_the_floor_keeps_every_layer_alive_unless_set_to_zero():
    scores = {"big": torch.arange(1000.0) + 100, "small": torch.arange(10.0)}  # small layer ranks last
    emptied = global_keep_masks(scores, 0.9, floor=0.0)
    assert int(emptied["small"].sum()) == 0
    kept = global_keep_masks(scores, 0.9, floor=0.01)
    assert int(kept["small"].sum()) == 1 and bool(kept["small"][9])  # its best unit survives
    assert sum(int(m.sum()) for m in kept.values()) == keep_count(1010, 0.9)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_bad_targets_are_refused(bad):
    with pytest.raises(ConfigError, match="sparsity"):
        global_keep_masks({"a": torch.ones(4)}, bad)


def test_floors_above_the_budget_are_refused_with_the_numbers():
    with pytest.raises(ConfigError, match="floor"):
        global_keep_masks({f"l{i}": torch.ones(10) for i in range(20)}, 0.99, floor=0.1)


def test_cubic_schedule_rises_fast_then_slowly():
    values = [cubic_sparsity(t, 10, 0.9) for t in range(12)]
    assert values[0] == 0.0 and values[10] == pytest.approx(0.9) and values[11] == pytest.approx(0.9)
    steps = [b - a for a, b in zip(values, values[1:11])]
    assert all(x > y for x, y in zip(steps, steps[1:]))
    with pytest.raises(ConfigError):
        cubic_sparsity(0, 0, 0.5)


def _student() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    return variationalize(model, VariationalConfig())


def test_log_alpha_target_gives_plain_layers_at_exactly_the_target():
    model = _student()
    with torch.no_grad():
        for layer in model.modules():
            if hasattr(layer, "log_sigma2"):
                layer.log_sigma2.copy_(torch.randn_like(layer.log_sigma2))
    scores = log_alpha_scores(model)
    masks = global_keep_masks(scores, 0.75)
    keeper = apply_keep_masks(model, masks)
    assert all(type(m) in (nn.Linear, nn.ReLU, nn.Sequential) for m in model.modules())
    nonzero = sum(int((m.weight != 0).sum()) for m in model.modules() if isinstance(m, nn.Linear))
    assert nonzero == keep_count(8 * 16 + 16 * 3, 0.75) == keeper.kept


def test_mask_keeper_holds_zeros_through_adam_steps_and_survivors_train():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = global_keep_masks(magnitude_scores(model, ("0", "2")), 0.8)
    keeper = apply_keep_masks(model, masks)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    keeper.attach(optimizer)
    before = model[0].weight.detach().clone()
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert torch.equal(model[0].weight != 0, masks["0"])
    assert torch.equal(model[2].weight != 0, masks["2"])
    assert not torch.equal(model[0].weight[masks["0"]], before[masks["0"]])  # the survivors moved


def test_channel_masks_zero_whole_rows_and_their_bias():
    model = variationalize(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)), VariationalConfig(granularity="channel", head=False))
    mask = torch.tensor([True, False, True, False, False, True])
    apply_keep_masks(model, {"0": mask})
    assert torch.equal((model[0].weight != 0).any(dim=1), mask)
    assert torch.equal(model[0].bias[~mask], torch.zeros(3))


def test_a_mask_of_the_wrong_shape_names_the_layer():
    model = nn.Sequential(nn.Linear(4, 6))
    with pytest.raises(ConfigError, match="'0'"):
        apply_keep_masks(model, {"0": torch.ones(5, dtype=torch.bool)})
    assert math.isfinite(float(model[0].weight.detach().sum()))


def test_floors_leave_most_of_a_tiny_budget_to_the_ranking():
    """At 99% the floors of big layers must not eat the budget and starve a small, important head."""
    scores = {"big1": torch.rand(3200), "big2": torch.rand(2500), "head": torch.rand(50) + 10}
    masks = global_keep_masks(scores, 0.99)
    budget = keep_count(5750, 0.99)
    assert sum(int(m.sum()) for m in masks.values()) == budget
    assert int(masks["head"].sum()) >= budget - 7 - 5  # everything beyond the two big floors
    assert int(masks["big1"].sum()) >= 1 and int(masks["big2"].sum()) >= 1
