"""NNI users' idioms (issue 12, item 5): N read from the evaluator's data, plain modules after
unwrap_model, a per-layer cap on a global per-channel ratio."""

import nni
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.compression import TorchEvaluator
from torch.utils.data import DataLoader, TensorDataset

from vs_plugin.errors import ConfigError
from vs_plugin.integrations.nni import VariationalStudentPruner
from vs_plugin.integrations.nni.evaluator import infer_num_train_samples
from vs_plugin.layers import VariationalLayer


def trained_like() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def evaluator_over(loader, model, optimizer=None, seen=None):
    def training_step(batch, model):
        return F.cross_entropy(model(batch[0]), batch[1])

    def training_func(model, optimizer, training_step, lr_scheduler=None, max_steps=None, max_epochs=None):
        if seen is not None:
            seen.append(optimizer)
        done = 0
        while done < (max_steps or 1):
            for batch in loader:
                loss = training_step(batch, model)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                done += 1
                if done >= (max_steps or 1):
                    return

    optimizer = optimizer or nni.trace(torch.optim.Adam)(model.parameters(), lr=1e-3)
    return TorchEvaluator(training_func, optimizer, training_step)


def test_num_train_samples_is_read_from_the_evaluators_data_and_unwrap_gives_plain_modules():
    model = trained_like()
    loader = DataLoader(TensorDataset(torch.randn(12, 3, 8, 8), torch.randint(0, 4, (12,))), batch_size=4)
    evaluator = evaluator_over(loader, model)
    assert infer_num_train_samples(evaluator) == 12
    pruner = VariationalStudentPruner(model, [{"op_types": ["Linear"], "sparse_ratio": 0.5}], evaluator, None,
                                      training_steps=2, objective={"kd_weight": 0.0})
    assert pruner.objective.num_train_samples == 12
    pruner.compress()
    pruner.unwrap_model()
    assert not any(isinstance(m, VariationalLayer) for m in model.modules())
    fresh = trained_like()
    fresh.load_state_dict(model.state_dict())  # NNI users' expectation: the original architecture loads it
    assert float((model[4].weight == 0).float().mean()) == pytest.approx(0.5, abs=0.05)


def test_num_train_samples_error_says_how_to_pass_it():
    model = trained_like()
    evaluator = evaluator_over([(torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,)))], model)
    with pytest.raises(ConfigError, match="num_train_samples=len\\(train_dataset\\)"):
        VariationalStudentPruner(model, [{"op_types": ["Linear"]}], evaluator, None, training_steps=1, objective={"kd_weight": 0.0})


def test_nni_global_channel_ratio_gets_a_per_layer_cap():
    from vs_plugin.integrations.nni.config import DEFAULT_MAX_CHANNEL_RATIO, translate_config_list

    config = [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": ["6"], "sparse_ratio": 0.5,
               "granularity": "out_channel", "global_group_id": 1}]
    translated = translate_config_list(trained_like(), config, {})
    weight = translated.nni_config_list[0]["target_settings"]["weight"]
    assert weight["max_sparse_ratio"] == DEFAULT_MAX_CHANNEL_RATIO
    config[0]["max_sparse_ratio"] = 0.7
    assert translate_config_list(trained_like(), config, {}).nni_config_list[0]["target_settings"]["weight"]["max_sparse_ratio"] == 0.7



class TokenNet(nn.Module):
    """A top-level parameter beside the layers, as ViT's ``cls_token``/``pos_embed``: NNI 3.0's
    ``patch_optim_param_group`` raises IndexError on its name."""

    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 8))
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.fc(self.features(x) + self.cls_token)))


def test_gates_join_the_users_param_group_of_their_layer_on_a_model_with_top_level_parameters():
    from vs_plugin.layers import ChannelGateLayer

    torch.manual_seed(0)
    model = TokenNet()
    loader = DataLoader(TensorDataset(torch.randn(12, 3, 8, 8), torch.randint(0, 4, (12,))), batch_size=4)
    rest = [p for n, p in model.named_parameters() if not n.startswith("fc.")]
    groups = [{"params": rest}, {"params": list(model.fc.parameters()), "lr": 0.05}]
    seen = []
    evaluator = evaluator_over(loader, model, nni.trace(torch.optim.Adam)(groups, lr=1e-3), seen)
    pruner = VariationalStudentPruner(
        model, [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": ["head"], "sparse_ratio": 0.5, "granularity": "out_channel"}],
        evaluator, None, training_steps=3, objective={"kd_weight": 0.0},
    )  # no variational_lr: the gates share the user's optimizer
    gates = {name: m for name, m in model.named_modules() if isinstance(m, ChannelGateLayer)}
    before = {name: m.log_alpha().detach().clone() for name, m in gates.items()}
    pruner.compress()
    (optimizer,) = seen  # the optimizer NNI built over the wrapped model and handed to the training loop
    fc_group = next(g for g in optimizer.param_groups if g["lr"] == 0.05)
    in_fc_group = {id(p) for p in fc_group["params"]}
    assert all(id(p) in in_fc_group for n, p in gates["fc"].named_parameters(recurse=False) if n not in ("weight", "bias"))
    assert not any(id(p) in in_fc_group for n, p in gates["features.0"].named_parameters(recurse=False) if n not in ("weight", "bias"))
    for name, gate in gates.items():
        assert (gate.log_alpha().detach() - before[name]).abs().max() > 1e-3, name


def test_a_distiller_fused_after_the_pruner_selects_the_layers_by_their_plain_op_types():
    from nni.compression.distillation import DynamicLayerwiseDistiller

    model, teacher = trained_like(), trained_like().eval()
    loader = DataLoader(TensorDataset(torch.randn(12, 3, 8, 8), torch.randint(0, 4, (12,))), batch_size=4)
    evaluator = evaluator_over(loader, model)
    pruner = VariationalStudentPruner(model, [{"op_types": ["Conv2d", "Linear"], "sparse_ratio": 0.5}], evaluator, teacher,
                                      training_steps=3)
    item = {"op_types": ["Linear"], "lambda": 0.1, "apply_method": "mse"}
    distil_config = [item]
    distiller = DynamicLayerwiseDistiller.from_compressor(pruner, distil_config, teacher_model=teacher,
                                                          teacher_predict=lambda batch, net: net(batch[0]))
    assert set(distiller._target_spaces) == {"4", "6"}  # both Linear layers, now variational; not the Conv2d
    assert item == {"op_types": ["Linear"], "lambda": 0.1, "apply_method": "mse"}  # the user's dict is not changed
    losses = []
    compute = distiller.compute_distill_loss
    distiller.compute_distill_loss = lambda: losses.append(compute()) or losses[-1]
    distiller.compress(max_steps=3, max_epochs=None)
    assert len(losses) == 3 and all(float(v.detach()) > 0 for v in losses)
    distiller.unwrap_model()
    distiller.unwrap_teacher_model()
    masks = pruner.get_masks()
    assert set(masks) == {"0", "4", "6"}
    pruner.unwrap_model()  # plain layers, masked weights zero
    assert not any(isinstance(m, VariationalLayer) for m in model.modules())
    assert torch.equal(model[4].weight == 0, masks["4"]["weight"] == 0)


def test_a_users_own_loop_gets_the_global_floor_ranking_and_the_kl_controller():
    """The user's TorchEvaluator (their own training_func): a global group at sparse_ratio lands
    exactly on it with every layer kept, and the KL controller moves the KL weight."""
    from vs_plugin.pruning import keep_count

    model = trained_like()
    loader = DataLoader(TensorDataset(torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))), batch_size=4)
    config = [{"op_types": ["Linear", "Conv2d"], "sparse_ratio": 0.9, "global_group_id": 0}]
    pruner = VariationalStudentPruner(model, config, evaluator_over(loader, model), None, training_steps=6, objective={"kd_weight": 0.0})
    _, masks = pruner.compress()
    kept = {name: int(targets["weight"].bool().sum()) for name, targets in masks.items()}
    sizes = {name: targets["weight"].numel() for name, targets in masks.items()}
    assert sum(kept.values()) == keep_count(sum(sizes.values()), 0.9)
    assert all(count >= 1 for count in kept.values())
    controller = pruner.objective.kl_controller
    assert controller.step == 6 and controller.scale != 1.0
