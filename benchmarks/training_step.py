"""Cost of one training step: Variational Student vs a plain KD step of the same dense student vs
the teacher's own step, measured in one process (ratios, not absolute times).

    python benchmarks/training_step.py                 # CPU, batch 64 and 256
    python benchmarks/training_step.py --device cuda   # on a GPU

Models: the paper's MLP pair (teacher 784-1200-1200-10, student 784-500-50-10) on
Fashion-MNIST-shaped inputs. Each variant is timed as the median of ``--repeats`` steps after a
warm-up. Variants:

- ``teacher``: CE step of the teacher (Adam);
- ``kd``: teacher forward + dense student forward/backward + Adam (the plain KD baseline);
- ``vs``: the same with the variational student and the whole VS objective (KD + KL/N);
- ``*-cached``: the teacher's logits precomputed (what vs-plugin does for in-memory data);
- ``vs-cached-compiled-kl``: plus the torch.compile'd KL (``--compile-kl``);
- ``*-loop-adam``: PyTorch's default (non-fused) Adam, as the code was before fused Adam;
- breakdown rows: forward of each model, the KL term forward+backward (the fused closed-form
  backward vs autograd through the formula), one Adam step.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import torch
import torch.nn.functional as F

from vs_plugin import ObjectiveConfig, VariationalStudentObjective, variationalize
from vs_plugin.losses import kd_loss, variational_kl
from vs_plugin.models import InputSpec, build_model
from vs_plugin.layers.base import VariationalLayer
from vs_plugin.layers.functional import kl_sum
from vs_plugin.training.optim import adam

SPEC = InputSpec(1, 28, 28, 10)


def median_ms(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(max(10, repeats // 10)):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1e3 * times[len(times) // 2]


def variants(batch: int, device: torch.device) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    teacher = build_model("mlp:784-1200-1200-10", SPEC).to(device)
    dense = build_model("mlp:784-500-50-10", SPEC).to(device)
    student = variationalize(build_model("mlp:784-500-50-10", SPEC)).to(device)
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    with torch.no_grad():
        cached_logits = teacher.eval()(x)
    objective = VariationalStudentObjective(student, teacher, ObjectiveConfig(), num_train_samples=60_000)
    compiled = VariationalStudentObjective(student, teacher, ObjectiveConfig(compile_kl=True), num_train_samples=60_000)
    opt = {
        "teacher": adam(teacher.parameters(), 1e-3),
        "dense": adam(dense.parameters(), 1e-3),
        "student": adam(student.parameters(), 1e-3),
        "dense-loop": torch.optim.Adam(dense.parameters(), 1e-3, foreach=False),
        "student-loop": torch.optim.Adam(student.parameters(), 1e-3, foreach=False),
    }

    def teacher_logits(cached: bool) -> torch.Tensor:
        if cached:
            return cached_logits
        with torch.no_grad():
            return teacher(x)

    def teacher_step():
        teacher.train()
        loss = F.cross_entropy(teacher(x), y)
        opt["teacher"].zero_grad()
        loss.backward()
        opt["teacher"].step()
        teacher.eval()

    def kd_step(cached: bool, optimizer: str = "dense"):
        def step():
            t = teacher_logits(cached)
            s = dense(x)
            loss = F.cross_entropy(s, y) + kd_loss(s, t, 4.0)
            opt[optimizer].zero_grad()
            loss.backward()
            opt[optimizer].step()
        return step

    def vs_step(cached: bool, optimizer: str = "student", objective_=objective):
        def step():
            terms = objective_(student(x), teacher_logits(cached), y)
            opt[optimizer].zero_grad()
            terms["loss"].backward()
            opt[optimizer].step()
        return step

    def kl_step():
        student.zero_grad()
        variational_kl(student).backward()

    def kl_autograd_step():  # the reference formula differentiated by autograd (before the fused KL)
        student.zero_grad()
        layers = [m for m in student.modules() if isinstance(m, VariationalLayer)]
        sum(kl_sum(*m.variational_parameters(), m.log_alpha_clip, m.kl_name) for m in layers).backward()

    return {
        "teacher": teacher_step,
        "kd": kd_step(False),
        "vs": vs_step(False),
        "kd-cached": kd_step(True),
        "vs-cached": vs_step(True),
        "vs-cached-compiled-kl": vs_step(True, objective_=compiled),
        "kd-loop-adam": kd_step(False, "dense-loop"),
        "vs-loop-adam": vs_step(False, "student-loop"),
        "forward: teacher": lambda: teacher_logits(False),
        "forward: dense student": lambda: dense(x),
        "forward: variational student (LRT)": lambda: student(x),
        "KL forward+backward (fused, as shipped)": kl_step,
        "KL forward+backward (autograd)": kl_autograd_step,
        "Adam step: dense student": opt["dense"].step,
        "Adam step: variational student": opt["student"].step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {}
    for batch in args.batch_sizes:
        steps = variants(batch, device)
        results[batch] = {name: median_ms(fn, args.repeats, device) for name, fn in steps.items()}
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; median ms per step\n")
    print("| step | " + " | ".join(f"batch {b}" for b in args.batch_sizes) + " |")
    print("|---|" + "---|" * len(args.batch_sizes))
    for name in results[args.batch_sizes[0]]:
        print(f"| {name} | " + " | ".join(f"{results[b][name]:.2f}" for b in args.batch_sizes) + " |")
    print("\nratios")
    for label, num, den in (
        ("VS / KD (teacher run every step)", "vs", "kd"),
        ("VS / KD (teacher outputs cached)", "vs-cached", "kd-cached"),
        ("VS compiled KL / KD (cached)", "vs-cached-compiled-kl", "kd-cached"),
        ("VS / teacher step", "vs-cached", "teacher"),
        ("VS as shipped / VS with loop Adam and the teacher run every step", "vs-cached", "vs-loop-adam"),
        ("KL fused / KL autograd", "KL forward+backward (fused, as shipped)", "KL forward+backward (autograd)"),
    ):
        print(f"- {label}: " + ", ".join(f"batch {b}: {results[b][num] / results[b][den]:.2f}x" for b in args.batch_sizes))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
