"""VariationalStudentPruner through NNI's TorchEvaluator on a tiny MLP: masks, training, composition."""

import copy

import nni
import pytest
import torch
import torch.nn.functional as F
from nni.compression import TorchEvaluator
from nni.compression.distillation import DynamicLayerwiseDistiller
from nni.compression.pruning import AGPPruner, LinearPruner
from nni.compression.utils.evaluator import LightningEvaluator
from torch.utils.data import TensorDataset

from vs_plugin import finalize
from vs_plugin.data.loaders import InMemoryLoader
from vs_plugin.errors import ConfigError
from vs_plugin.integrations.nni import VariationalStudentPruner, bake_masks, make_torch_evaluator
from vs_plugin.layers import ChannelGateLayer, SparseVDLayer, VariationalLayer
from vs_plugin.models import MLP

SAMPLES = 64
HEAD = "3"  # MLP([8, 12, 3]): 0 Flatten, 1 Linear, 2 ReLU, 3 Linear (the head)


@pytest.fixture
def batches():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(SAMPLES, 8, generator=generator)
    labels = (inputs[:, 0] > 0).long() + (inputs[:, 1] > 0).long()
    return InMemoryLoader(TensorDataset(inputs, labels), 16, shuffle=True)


@pytest.fixture
def teacher():
    return MLP([8, 16, 3]).eval()


def student():
    return MLP([8, 12, 3])


def pruner_for(model, batches, teacher, config_list, steps=8, **kwargs):
    evaluator = make_torch_evaluator(model, batches, lr=1e-2)
    return VariationalStudentPruner(model, config_list, evaluator, teacher, training_steps=steps, num_train_samples=SAMPLES, **kwargs)


# (granularity, threshold, init log sigma^2, excluded): thresholds chosen so both kept and pruned units occur.
THRESHOLD_CASES = {"default": (-6.0, -10.0, []), "out_channel": (-0.15, -1.0, [HEAD])}


@pytest.mark.parametrize("granularity", list(THRESHOLD_CASES))
def test_threshold_masks_are_the_layers_keep_masks(granularity, batches, teacher):
    threshold, init, excluded = THRESHOLD_CASES[granularity]
    model = student()
    config = {"op_types": ["Linear"], "sparse_threshold": threshold, "granularity": granularity, "exclude_op_names": excluded,
              "target_settings": {"weight": {"init_log_sigma2": init}}}
    pruner = pruner_for(model, batches, teacher, [config], variational_lr=0.05)
    returned, masks = pruner.compress()
    assert returned is model
    pruner.unwrap_model(keep_variational=True)  # inspect the variational layers (default: plain modules)
    layer_type = SparseVDLayer if granularity == "default" else ChannelGateLayer
    assert set(masks) == {n for n, m in model.named_modules() if isinstance(m, layer_type)} == ({"1", HEAD} - set(excluded))
    for name, targets in masks.items():
        layer = model.get_submodule(name)
        keep = layer.keep_mask()
        assert layer.threshold == threshold
        if granularity == "default":
            assert set(targets) == {"weight"}
            assert torch.equal(targets["weight"].bool(), keep)
        else:
            assert torch.equal(targets["weight"].bool(), keep.view(-1, 1).expand_as(layer.weight))
            assert torch.equal(targets["bias"].bool(), keep)
        assert 0 < targets["weight"].float().mean() < 1


@pytest.mark.parametrize("granularity", ["default", "out_channel"])
def test_ratio_masks_prune_the_highest_log_alpha(granularity, batches, teacher):
    model = student()
    excluded = [HEAD] if granularity == "out_channel" else []
    config = {"op_types": ["Linear"], "sparse_ratio": 0.5, "granularity": granularity, "exclude_op_names": excluded,
              "target_settings": {"weight": {"init_log_sigma2": -2.0}}}
    pruner = pruner_for(model, batches, teacher, [config], variational_lr=0.05)
    _, masks = pruner.compress()
    pruner.unwrap_model(keep_variational=True)  # inspect the variational layers (default: plain modules)
    for name, targets in masks.items():
        layer = model.get_submodule(name)
        log_alpha = layer.log_alpha().detach()
        keep = targets["weight"].bool() if granularity == "default" else targets["weight"].bool()[:, 0]
        assert keep.shape == log_alpha.shape
        assert int((~keep).sum()) == int(log_alpha.numel() * 0.5)
        assert log_alpha[keep].max() <= log_alpha[~keep].min()


def test_training_updates_theta_and_the_variational_parameters(batches, teacher):
    model = student()
    before = copy.deepcopy(model)
    pruner = pruner_for(model, batches, teacher, [{"op_types": ["Linear"]}])
    pruner.compress()
    pruner.unwrap_model(keep_variational=True)  # inspect the variational layers (default: plain modules)
    for name in ("1", HEAD):
        layer = model.get_submodule(name)
        assert isinstance(layer, VariationalLayer)
        assert not torch.equal(layer.weight, before.get_submodule(name).weight)  # theta trained, left in the model
        assert not torch.all(layer.log_sigma2 == -10.0)  # log sigma^2 reached the user's optimizer
    terms = pruner.loss_patch.last_terms
    assert terms["kd"] > 0 and terms["kl"] > 0
    assert torch.isclose(terms["loss"], terms["user_loss"] + terms["kd"] + terms["kl"] * pruner.kl_warmup.beta(7))


def test_baked_model_matches_the_cores_finalize_in_threshold_mode(batches, teacher):
    model = student()
    pruner = pruner_for(model, batches, teacher, [{"op_types": ["Linear"], "sparse_threshold": -6.0}])
    _, masks = pruner.compress()
    pruner.unwrap_model(keep_variational=True)  # inspect the variational layers (default: plain modules)
    reference = finalize(copy.deepcopy(model)).eval()
    bake_masks(model, masks).eval()
    assert not any(isinstance(m, VariationalLayer) for m in model.modules())
    inputs = torch.randn(5, 8)
    assert torch.allclose(model(inputs), reference(inputs))
    assert torch.equal(model[1].weight == 0, ~masks["1"]["weight"].bool())


def test_bake_masks_refuses_a_wrapped_model(batches, teacher):
    model = student()
    pruner = pruner_for(model, batches, teacher, [{"op_types": ["Linear"]}], steps=1)
    _, masks = pruner.compress()
    with pytest.raises(ConfigError, match="unwrap_model"):
        bake_masks(model, masks)


def test_fusion_with_dynamic_layerwise_distiller_adds_its_loss(batches, teacher):
    model = student()
    seen = []

    def training_step(batch, net):
        ce = F.cross_entropy(net(batch[0]), batch[1])
        seen.append({"ce": ce.detach()})
        return ce

    def training_func(net, optimizer, step, lr_schedulers=None, max_steps=None, max_epochs=None):
        done = 0
        while done < max_steps:
            for batch in batches:
                loss = step(batch, net)
                seen[-1]["total"] = loss.detach()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                done += 1
                if done == max_steps:
                    return

    evaluator = TorchEvaluator(training_func, nni.trace(torch.optim.Adam)(model.parameters(), lr=1e-2), training_step)
    pruner = VariationalStudentPruner(model, [{"op_types": ["Linear"]}], evaluator, teacher, training_steps=5, num_train_samples=SAMPLES)
    distiller = DynamicLayerwiseDistiller.from_compressor(
        pruner, [{"op_names": [HEAD], "target_names": ["_output_"], "lambda": 0.5, "apply_method": "kl"}],
        teacher_model=teacher, teacher_predict=lambda batch, net: net(batch[0]),
    )
    distill_losses = []
    compute = distiller.compute_distill_loss

    def recording():
        value = compute()
        distill_losses.append(value.detach())
        return value

    distiller.compute_distill_loss = recording
    distiller.compress(max_steps=5, max_epochs=None)
    assert len(distill_losses) == 5 and all(d > 0 for d in distill_losses)
    terms = pruner.loss_patch.last_terms
    # The distiller patches first (lambda * CE + distill), then the Variational Student adds KD + KL.
    assert torch.isclose(terms["user_loss"], seen[-1]["ce"] + distill_losses[-1])
    assert torch.isclose(seen[-1]["total"], seen[-1]["ce"] + distill_losses[-1] + terms["kd"] + terms["kl"] * pruner.kl_warmup.beta(4))
    assert set(pruner.get_masks()) == {"1", HEAD}


@pytest.mark.parametrize("scheduler", [AGPPruner, LinearPruner])
def test_scheduling_regenerates_masks_with_growing_sparsity(scheduler, batches, teacher):
    model = student()
    pruner = pruner_for(model, batches, teacher, [{"op_types": ["Linear"], "sparse_ratio": 0.8}])
    sparsities = []
    update = pruner.update_masks

    def recording(masks):
        sparsities.append(1 - masks["1"]["weight"].float().mean().item())
        update(masks)

    pruner.update_masks = recording
    _, masks = scheduler(pruner, interval_steps=2, total_times=3).compress(max_steps=6, max_epochs=None)
    final = int(96 * 0.8) / 96  # layer 1 has 12 x 8 weights; NNI prunes int(numel * ratio) of them
    assert len(sparsities) == 3
    assert sparsities[0] < sparsities[1] < sparsities[2] == pytest.approx(final)
    assert 1 - masks["1"]["weight"].float().mean().item() == pytest.approx(final)


def test_scheduling_a_log_alpha_threshold_is_refused(batches, teacher):
    pruner = pruner_for(student(), batches, teacher, [{"op_types": ["Linear"], "sparse_threshold": 3.0}])
    with pytest.raises(ConfigError, match="sparse_ratio"):
        AGPPruner(pruner, interval_steps=2, total_times=2).compress(max_steps=4, max_epochs=None)


def test_lightning_evaluator_is_refused_with_a_way_out(batches, teacher):
    evaluator = LightningEvaluator.__new__(LightningEvaluator)  # Lightning itself need not be installed
    with pytest.raises(ConfigError, match="TorchEvaluator"):
        VariationalStudentPruner(student(), [{"op_types": ["Linear"]}], evaluator, teacher, 5, num_train_samples=SAMPLES)


BAD_CONFIGS = {
    "unknown key": ([{"op_types": ["Linear"], "sparsity_typo": 0.5}], "schema"),
    "granularity": ([{"op_types": ["Linear"], "granularity": "in_channel"}], "granularity"),
    "both sparsities": ([{"op_types": ["Linear"], "target_settings": {"weight": {"sparse_ratio": 0.5, "sparse_threshold": 3}}}], "either"),
    "ratio range": ([{"op_types": ["Linear"], "sparse_ratio": 1.5}], r"\[0, 1\]"),
    "unknown name": ([{"op_names": ["nope"]}], "does not have: nope"),
    "nothing selected": ([{"op_types": ["Conv2d"]}], "selects no module"),
    "not convertible": ([{"op_types": ["ReLU"]}], "cannot make variational"),
    "gated head": ([{"op_types": ["Linear"], "granularity": "out_channel"}], "exclude_op_names"),
    "selected twice": ([{"op_names": ["1"]}, {"op_types": ["Linear"]}], "selected by both"),
    "ratio key with threshold": ([{"op_types": ["Linear"], "global_group_id": 0}], "only work with sparse_ratio"),
    "method key on bias": ([{"op_types": ["Linear"], "target_settings": {"bias": {"temperature": 2.0}}}], r"target_settings\['weight'\]"),
    "bad loss value": ([{"op_types": ["Linear"], "target_settings": {"weight": {"temperature": -1.0}}}], "temperature"),
    "bad layer value": ([{"op_types": ["Linear"], "target_settings": {"weight": {"kl": "nope"}}}], "kl"),
    "threshold outside the clip": ([{"op_types": ["Linear"], "sparse_threshold": 9.0}], "threshold"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_lists_are_clear_errors(case, batches, teacher):
    config_list, message = BAD_CONFIGS[case]
    model = student()
    with pytest.raises(ConfigError, match=message):
        pruner_for(model, batches, teacher, config_list)
    assert not any(isinstance(m, VariationalLayer) for m in model.modules())  # validated before the model changes


def test_loss_settings_given_twice_must_agree(batches, teacher):
    config = [{"op_types": ["Linear"], "target_settings": {"weight": {"temperature": 2.0}}}]
    with pytest.raises(ConfigError, match="temperature"):
        pruner_for(student(), batches, teacher, config, objective={"temperature": 8.0})
    pruner = pruner_for(student(), batches, teacher, config, objective={"kd_weight": 0.5})
    assert pruner.objective.config.temperature == 2.0 and pruner.objective.config.kd_weight == 0.5


def test_building_on_modules_another_compressor_wrapped_is_refused(batches, teacher):
    model = student()
    evaluator = make_torch_evaluator(model, batches)
    distiller = DynamicLayerwiseDistiller(model, [{"op_names": [HEAD], "target_names": ["_output_"]}], evaluator, teacher,
                                          teacher_predict=lambda batch, net: net(batch[0]))
    with pytest.raises(ConfigError, match="build the VariationalStudentPruner first"):
        VariationalStudentPruner.from_compressor(distiller, [{"op_types": ["Linear"]}], teacher, 5, num_train_samples=SAMPLES)


def test_bad_arguments_are_refused_before_the_model_changes(batches, teacher):
    model = student()
    config = [{"op_types": ["Linear"]}]
    with pytest.raises(ConfigError, match="num_train_samples"):
        VariationalStudentPruner(model, config, make_torch_evaluator(model, batches), teacher, 5, num_train_samples=0)
    with pytest.raises(ConfigError, match="needs a teacher"):
        VariationalStudentPruner(model, config, make_torch_evaluator(model, batches), None, 5, num_train_samples=SAMPLES)
    with pytest.raises(ConfigError, match="training_steps"):
        VariationalStudentPruner(model, config, make_torch_evaluator(model, batches), teacher, 0, num_train_samples=SAMPLES)
    assert not any(isinstance(m, VariationalLayer) for m in model.modules())
    sparse_vd_alone = VariationalStudentPruner(model, config, make_torch_evaluator(model, batches), None, 2,
                                               num_train_samples=SAMPLES, objective={"kd_weight": 0.0})
    _, masks = sparse_vd_alone.compress()
    assert set(masks) == {"1", HEAD}


def test_global_ratio_ranks_log_alpha_over_all_layers(batches, teacher):
    model = student()
    config = {"op_types": ["Linear"], "sparse_ratio": 0.6, "global_group_id": 0, "target_settings": {"weight": {"init_log_sigma2": -2.0}}}
    pruner = pruner_for(model, batches, teacher, [config], variational_lr=0.05)
    _, masks = pruner.compress()
    pruner.unwrap_model(keep_variational=True)  # inspect the variational layers (default: plain modules)
    log_alpha = torch.cat([model.get_submodule(n).log_alpha().detach().flatten() for n in ("1", HEAD)])
    keep = torch.cat([masks[n]["weight"].bool().flatten() for n in ("1", HEAD)])
    assert log_alpha[keep].max() <= log_alpha[~keep].min()
    assert abs(int((~keep).sum()) - int(0.6 * keep.numel())) <= 1
