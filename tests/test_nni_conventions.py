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


def evaluator_over(loader, model):
    def training_step(batch, model):
        return F.cross_entropy(model(batch[0]), batch[1])

    def training_func(model, optimizer, training_step, lr_scheduler=None, max_steps=None, max_epochs=None):
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

    return TorchEvaluator(training_func, nni.trace(torch.optim.Adam)(model.parameters(), lr=1e-3), training_step)


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

