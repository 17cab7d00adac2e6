"""The shrunk dense form of an unstructured MLP student: dead hidden units removed, exactly."""

from __future__ import annotations

import torch
import torch.nn as nn

MLP_LAYERS = (nn.Flatten, nn.Linear, nn.ReLU)


def is_mlp(model: nn.Module) -> bool:
    """A ``Flatten-Linear-ReLU-...-Linear`` ``nn.Sequential`` (the built-in MLPs)."""
    return (
        isinstance(model, nn.Sequential)
        and all(isinstance(m, MLP_LAYERS) for m in model)
        and sum(isinstance(m, nn.Linear) for m in model) >= 1
        and all(m.bias is not None for m in model if isinstance(m, nn.Linear))
    )


@torch.no_grad()
def shrink(model: nn.Sequential) -> nn.Sequential:
    """Remove dead hidden units of a Flatten-Linear-ReLU-...-Linear MLP, exactly.

    A unit whose incoming weights are all zero outputs relu(b) for every input: its effect on the
    next layer, W_next[:, j] * relu(b_j), is folded into the next bias. A unit whose outgoing
    weights are all zero has no effect. Both are removed.
    """
    linears = [m for m in model if isinstance(m, nn.Linear)]
    weights = [layer.weight.detach().clone() for layer in linears]
    biases = [layer.bias.detach().clone() for layer in linears]
    for i in range(len(linears) - 1):
        incoming_dead = weights[i].abs().sum(dim=1) == 0
        outgoing_dead = weights[i + 1].abs().sum(dim=0) == 0
        constant = torch.relu(biases[i]) * incoming_dead
        biases[i + 1] = biases[i + 1] + weights[i + 1] @ constant
        keep = ~(incoming_dead | outgoing_dead)
        weights[i], biases[i] = weights[i][keep], biases[i][keep]
        weights[i + 1] = weights[i + 1][:, keep]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (w, b) in enumerate(zip(weights, biases)):
        layer = nn.Linear(w.shape[1], w.shape[0])
        layer.weight.copy_(w)
        layer.bias.copy_(b)
        layers.append(layer)
        if i < len(weights) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()
