"""The Variational Student the NNI way: a config_list, a TorchEvaluator over the user's own
training loop, ``compress()``, ``unwrap_model()``, then the masks made physical.

    python docs/examples/nni_way.py cnn|resnet|vit

Run by tests/test_docs_examples.py (which asserts that the gates' log alpha moves).
"""

from __future__ import annotations

import sys

import nni
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp
from nni.compression import TorchEvaluator
from torch.utils.data import DataLoader, TensorDataset

from vs_plugin.integrations.nni import VariationalStudentPruner
from vs_plugin.integrations.torch_pruning import apply_masks
from vs_plugin.layers import ChannelGateLayer

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from tp_way import make_model  # noqa: E402 - the same three models


def main(kind: str = "cnn", steps: int = 5) -> dict:
    torch.manual_seed(0)
    model = make_model(kind)
    teacher = make_model(kind).eval()
    data = TensorDataset(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    loader = DataLoader(data, batch_size=8, shuffle=True)

    def training_step(batch, model):
        return F.cross_entropy(model(batch[0]), batch[1])

    def training_func(model, optimizer, training_step, lr_scheduler=None, max_steps=None, max_epochs=None):
        done = 0
        while max_steps is None or done < max_steps:
            for batch in loader:
                loss = training_step(batch, model)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                done += 1
                if max_steps is not None and done >= max_steps:
                    return

    head = model.get_classifier() if hasattr(model, "get_classifier") else model[-1]
    head_name = next(n for n, m in model.named_modules() if m is head)
    config_list = [{"op_types": ["Conv2d", "Linear"], "exclude_op_names": [head_name],
                    "sparse_ratio": 0.5, "granularity": "out_channel"}]
    evaluator = TorchEvaluator(training_func, nni.trace(torch.optim.Adam)(model.parameters(), lr=1e-3), training_step)
    # num_train_samples is read from the DataLoader the training loop uses; the gates join the
    # optimizer's param group of their layer (same learning rate and schedule).
    pruner = VariationalStudentPruner(model, config_list, evaluator, teacher, training_steps=steps)
    gates = [m for m in model.modules() if isinstance(m, ChannelGateLayer)]
    before = torch.cat([g.log_alpha().detach() for g in gates])
    _, masks = pruner.compress()
    moved = float((torch.cat([g.log_alpha().detach() for g in gates]) - before).abs().max())
    pruner.unwrap_model()  # plain nn.Conv2d / nn.Linear again, masked weights exactly zero

    example = data.tensors[0][:1]
    model.eval()
    macs_before, _ = tp.utils.count_ops_and_params(model, example)
    apply_masks(model, masks, example)  # NNI's masks -> a physically smaller model
    macs_after, _ = tp.utils.count_ops_and_params(model, example)
    output = model(example)
    result = {"log_alpha_moved": moved, "macs_before": macs_before, "macs_after": macs_after, "output": tuple(output.shape)}
    print(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cnn")
