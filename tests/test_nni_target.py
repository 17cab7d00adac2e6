"""The NNI pruner's sparse_ratio at a target: a global group ranked by the core's rule (one log
alpha ranking with a per-layer floor, exact count) and the KL controller tracking the ratio."""

import pytest
import torch

from vs_plugin.errors import ConfigError
from vs_plugin.pruning import keep_count

from test_nni_pruner import HEAD, SAMPLES, batches, pruner_for, student, teacher  # noqa: F401  (fixtures)

# The head starts far noisier than the hidden layer: a plain global log alpha ranking empties it.
NOISY_HEAD = [
    {"op_names": ["1"], "sparse_ratio": 0.9, "global_group_id": 0},
    {"op_names": [HEAD], "sparse_ratio": 0.9, "global_group_id": 0, "target_settings": {"weight": {"init_log_sigma2": 4.0}}},
]


def _kept(masks, name):
    return int(masks[name]["weight"].bool().sum())


def _config(floor=None):
    entries = [dict(e) for e in NOISY_HEAD]
    if floor is not None:
        for entry in entries:
            entry["layer_floor"] = floor
    return entries


def test_a_global_group_keeps_a_floor_in_every_layer_and_lands_exactly_on_the_ratio(batches, teacher):
    model = student()
    _, masks = pruner_for(model, batches, teacher, _config(), steps=2, kl_controller=False).compress()
    total = 8 * 12 + 12 * 3
    assert _kept(masks, "1") + _kept(masks, HEAD) == keep_count(total, 0.9)
    assert _kept(masks, HEAD) >= 1  # ceil(0.2 * 0.1 * 36) = 1


def test_layer_floor_zero_is_the_plain_global_ranking_which_empties_the_noisy_head(batches, teacher):
    model = student()
    _, masks = pruner_for(model, batches, teacher, _config(floor=0.0), steps=2, kl_controller=False).compress()
    assert _kept(masks, HEAD) == 0
    assert _kept(masks, "1") == keep_count(8 * 12 + 12 * 3, 0.9)


@pytest.mark.parametrize(
    "config, message",
    [
        ([{"op_types": ["Linear"], "sparse_ratio": 0.9, "layer_floor": 0.2}], "needs sparse_ratio with a global_group_id"),
        ([{"op_types": ["Linear"], "sparse_threshold": 3.0, "layer_floor": 0.2}], "layer_floor needs"),
        ([{"op_types": ["Linear"], "sparse_ratio": 0.9, "global_group_id": 0, "layer_floor": 1.5}], "must lie in"),
        ([{"op_names": ["1"], "sparse_ratio": 0.9, "global_group_id": 0},
          {"op_names": [HEAD], "sparse_ratio": 0.5, "global_group_id": 0}], "different sparse_ratio"),
    ],
)
def test_bad_floor_settings_are_refused(config, message, batches, teacher):
    with pytest.raises(ConfigError, match=message):
        pruner_for(student(), batches, teacher, config)


def test_the_kl_controller_follows_one_sparse_ratio_and_moves_the_kl_weight(batches, teacher):
    pruner = pruner_for(student(), batches, teacher, [{"op_types": ["Linear"], "sparse_ratio": 0.9}], steps=8)
    controller = pruner.objective.kl_controller
    assert controller is not None and controller.target == 0.9 and controller.total_steps == 8
    pruner.compress()
    assert controller.step == 8 and controller.scale != 1.0


def test_no_controller_by_threshold_or_when_switched_off(batches, teacher):
    by_threshold = pruner_for(student(), batches, teacher, [{"op_types": ["Linear"], "sparse_threshold": 3.0}])
    switched_off = pruner_for(student(), batches, teacher, [{"op_types": ["Linear"], "sparse_ratio": 0.9}], kl_controller=False)
    assert by_threshold.objective.kl_controller is None and switched_off.objective.kl_controller is None
    with pytest.raises(ConfigError, match="kl_controller"):
        pruner_for(student(), batches, teacher, [{"op_types": ["Linear"], "sparse_ratio": 0.9}], kl_controller="yes")
