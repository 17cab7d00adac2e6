"""The Variational Student the torch-pruning way: train with a regularising pruner, prune with
torch-pruning's own MetaPruner scored by ``VariationalImportance``.

    python docs/examples/tp_way.py cnn|resnet|vit

Run by tests/test_docs_examples.py (which asserts that the gates' log alpha moves).
"""

from __future__ import annotations

import sys

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from vs_plugin import ObjectiveConfig
from vs_plugin.integrations.torch_pruning import VariationalImportance, VariationalStudentPruner, gate_pruners
from vs_plugin.layers import ChannelGateLayer


def make_model(kind: str) -> nn.Module:
    if kind == "cnn":
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
        )
    if kind == "resnet":
        return timm.create_model("resnet10t", pretrained=False, num_classes=10)
    if kind == "vit":
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=8)
    raise SystemExit(f"unknown model {kind!r}; choose cnn, resnet or vit")


def gate_log_alpha(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.log_alpha().detach().flatten() for m in model.modules() if isinstance(m, ChannelGateLayer)])


def main(kind: str = "cnn", steps: int = 5) -> dict:
    torch.manual_seed(0)
    model = make_model(kind)
    inputs, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    example = inputs[:1]
    head = model.get_classifier() if hasattr(model, "get_classifier") else model[-1]

    # 1. Train: torch-pruning's regularising-pruner protocol (loss.backward(); pruner.regularize(); step).
    pruner = VariationalStudentPruner(
        model, example, num_train_samples=len(inputs), objective=ObjectiveConfig(kd_weight=0.0),
        pruning_ratio=0.5, ignored_layers=[head],
    )
    before = gate_log_alpha(model)
    optimizer = torch.optim.Adam(pruner.parameter_groups(lr=1e-3, gate_lr=1e-2))
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        pruner.regularize(model)
        optimizer.step()
    moved = float((gate_log_alpha(model) - before).abs().max())

    # 2. Prune with torch-pruning's own MetaPruner, gates registered as customized pruners.
    model.eval()
    macs_before, _ = tp.utils.count_ops_and_params(model, example)
    num_heads = {m.qkv: m.num_heads for m in model.modules() if hasattr(m, "qkv") and hasattr(m, "num_heads")}
    meta = tp.pruner.MetaPruner(
        model, example, importance=VariationalImportance(), pruning_ratio=0.5,
        ignored_layers=[head], num_heads=num_heads, customized_pruners=gate_pruners(),
    )
    meta.step()
    for m in model.modules():  # torch-pruning leaves timm's attention attributes to the user
        if not (hasattr(m, "qkv") and hasattr(m, "num_heads")):
            continue
        m.head_dim = m.qkv.out_features // (3 * m.num_heads)
        m.attn_dim = m.head_dim * m.num_heads
    macs_after, _ = tp.utils.count_ops_and_params(model, example)
    model.train()
    F.cross_entropy(model(inputs), labels).backward()  # still trainable, gates and all
    model.eval()
    output = model(example)
    result = {"log_alpha_moved": moved, "macs_before": macs_before, "macs_after": macs_after, "output": tuple(output.shape)}
    print(result)
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "cnn")
