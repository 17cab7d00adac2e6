"""Cost of one Variational Student training step vs a plain KD step of the same dense student,
timed interleaved in one process (read the ratios, not the absolute times).

    python benchmarks/training_step.py --threads 1                       # MLP and resnet18, CPU
    python benchmarks/training_step.py --threads 1 --models mlp          # the paper's MLP only
    python benchmarks/training_step.py --threads 1 --profile mlp:vs-cached:64   # per-op table
    python benchmarks/training_step.py --device cuda
    VS_PLUGIN_ROOT=/path/to/other/checkout python benchmarks/training_step.py ...  # another version

Models:

- ``mlp``: the paper's pair on Fashion-MNIST-shaped inputs (teacher 784-1200-1200-10, student
  784-500-50-10, 417,500 weights). Steps: ``kd`` (teacher forward + dense student forward/backward
  + Adam), ``vs`` (the same student made variational, per weight, with the whole objective:
  KD + KL/N), each with the teacher run every step and with its logits cached (``*-cached``, what
  ``vs-plugin compress`` does for in-memory data).
  ``lrt-floor-cached`` is the floor the issue names: an MLP of the same shape whose layers compute
  the local reparametrisation's two products and noise from a weight and a directly trained
  variance (no log sigma^2, no KL, no per-weight pass), with Adam on both: what a VS step would
  cost if its per-weight work were free.
- ``resnet18``: timm resnet18 teacher and student at 32x32 (10 classes), the teacher run every
  step (as with augmented data). Steps: ``kd``, ``vs`` (per-weight student), ``vs-channel``
  (structured student: one variational gate per output channel).

Each round runs one step of every variant of a (model, batch) group in turn, so the machine's
load hits all of them alike; a variant's time is the median over ``--repeats`` rounds after a
warm-up. The ratios are VS / KD of the same group.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import vs_plugin
from vs_plugin import ObjectiveConfig, VariationalConfig, VariationalStudentObjective, variationalize
from vs_plugin.losses import kd_loss
from vs_plugin.models import InputSpec, build_model
from vs_plugin.training.optim import adam

MODELS = {
    # name: (input spec, teacher, student, variational variants, default repeats)
    "mlp": (InputSpec(1, 28, 28, 10), "mlp:784-1200-1200-10", "mlp:784-500-50-10", {"vs": "weight"}, 300),
    "resnet18": (InputSpec(3, 32, 32, 10), "timm:resnet18", "timm:resnet18", {"vs": "weight", "vs-channel": "channel"}, 15),
}
Step = Callable[[], None]


class LRTFloor(nn.Module):
    """The MLP's Linear layers with the local reparametrisation's two products and no per-weight work."""

    def __init__(self, dense: nn.Module) -> None:
        super().__init__()
        linears = [m for m in dense.modules() if isinstance(m, nn.Linear)]
        self.weights = nn.ParameterList([nn.Parameter(m.weight.detach().clone()) for m in linears])
        self.variances = nn.ParameterList([nn.Parameter(torch.full_like(m.weight, 4.5e-5)) for m in linears])
        self.biases = nn.ParameterList([nn.Parameter(m.bias.detach().clone()) for m in linears])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for index, (weight, variance, bias) in enumerate(zip(self.weights, self.variances, self.biases)):
            mean = F.linear(h, weight, bias)
            var = F.linear(h * h, variance)
            h = mean + torch.sqrt(var.clamp_min(0.0) + 1e-8) * torch.randn_like(mean)
            if index < len(self.weights) - 1:
                h = F.relu(h)
        return h


def _kd_step(student: nn.Module, optimizer, x, y, teacher_logits: Callable[[], torch.Tensor]) -> Step:
    def step() -> None:
        t = teacher_logits()
        s = student(x)
        loss = F.cross_entropy(s, y) + kd_loss(s, t, 4.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _vs_step(student: nn.Module, objective, optimizer, x, y, teacher_logits: Callable[[], torch.Tensor]) -> Step:
    def step() -> None:
        t = teacher_logits()
        terms = objective(student(x), t, y)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        float(terms["kl"].detach())  # the training loop logs every term every step

    return step


def variants(model: str, batch: int, device: torch.device) -> dict[str, Step]:
    """The timed steps of one (model, batch size) group."""
    spec, teacher_name, student_name, variational, _ = MODELS[model]
    torch.manual_seed(0)
    teacher = build_model(teacher_name, spec).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    x = torch.randn(batch, spec.channels, spec.height, spec.width, device=device)
    y = torch.randint(0, spec.num_classes, (batch,), device=device)

    def run_teacher() -> torch.Tensor:
        with torch.no_grad():
            return teacher(x)

    cached = run_teacher()
    steps: dict[str, Step] = {}
    dense = build_model(student_name, spec).to(device).train()
    dense_optimizer = adam(dense.parameters(), 1e-3)
    for name, granularity in variational.items():
        student = variationalize(build_model(student_name, spec), VariationalConfig(granularity=granularity)).to(device).train()
        objective = VariationalStudentObjective(student, teacher, ObjectiveConfig(), num_train_samples=60_000)
        optimizer = adam(student.parameters(), 1e-3)
        steps[name] = _vs_step(student, objective, optimizer, x, y, run_teacher)
        if model == "mlp":
            steps[name + "-cached"] = _vs_step(student, objective, optimizer, x, y, lambda: cached)
    steps["kd"] = _kd_step(dense, dense_optimizer, x, y, run_teacher)
    if model == "mlp":
        steps["kd-cached"] = _kd_step(dense, dense_optimizer, x, y, lambda: cached)
        floor = LRTFloor(dense).to(device)
        steps["lrt-floor-cached"] = _kd_step(floor, adam(floor.parameters(), 1e-3), x, y, lambda: cached)
    return steps


def interleaved_medians(steps: dict[str, Step], repeats: int, device: torch.device, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median ms per step of each variant, one step of each in turn per round."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(max(3, repeats // 10)):  # warm-up: allocator, compilation, Adam state
        for step in steps.values():
            step()
    sync()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = clock()
            step()
            sync()
            times[name].append(clock() - start)
    return {name: 1e3 * sorted(values)[len(values) // 2] for name, values in times.items()}


def profile(model: str, variant: str, batch: int, device: torch.device, rows: int = 30) -> str:
    """torch.profiler table (self time per op) of 30 steps of one variant."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    step = variants(model, batch, device)[variant]
    for _ in range(10):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(30):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, help="rounds per group (default: 300 for mlp, 15 for resnet18)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--clock",
        choices=("auto", "cpu", "wall"),
        default="auto",
        help="cpu: the process's CPU time (immune to other processes on a shared machine; "
        "equals wall time for one thread); wall: elapsed time; auto: cpu with --threads 1 on CPU, else wall",
    )
    parser.add_argument("--profile", metavar="MODEL:VARIANT:BATCH", help="print a per-op profile of one step instead")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device)
    use_cpu_clock = args.clock == "cpu" or (args.clock == "auto" and device.type == "cpu" and torch.get_num_threads() == 1)
    clock = time.process_time if use_cpu_clock else time.perf_counter
    print(f"clock: {'process CPU time' if use_cpu_clock else 'wall time'}")
    print(f"vs_plugin from {os.path.dirname(vs_plugin.__file__)}; device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.profile:
        model, variant, batch = args.profile.split(":")
        print(profile(model, variant, int(batch), device))
        return
    results: dict[str, dict[str, dict[str, float]]] = {}
    for model in args.models:
        repeats = args.repeats or MODELS[model][4]
        results[model] = {}
        for batch in args.batch_sizes:
            medians = interleaved_medians(variants(model, batch, device), repeats, device, clock)
            results[model][str(batch)] = medians
            print(f"\n{model}, batch {batch}, median ms per step over {repeats} interleaved rounds")
            for name, ms in medians.items():
                print(f"  {name:<12} {ms:9.2f}")
            for name in medians:
                if name.startswith(("vs", "lrt")):
                    reference = "kd-cached" if name.endswith("-cached") else "kd"
                    print(f"  {name} / {reference}: {medians[name] / medians[reference]:.2f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
