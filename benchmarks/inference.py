"""Inference cost of a compressed MLP student vs its dense teacher, measured in one process.

    vs-plugin compress --teacher mlp:784-1200-1200-10 --student mlp:784-500-50-10 \
        --dataset fashion-mnist --out runs/fmnist
    python benchmarks/inference.py --run runs/fmnist

Variants (each checked to compute the same outputs as the compressed student):

- ``teacher``: the dense teacher (``OUT/teacher.pt``, or ``--teacher-checkpoint``);
- ``student dense``: the compressed student as saved, zeros stored densely;
- ``student CSR``: every Linear weight as a ``torch.sparse_csr`` matrix (``torch.sparse.mm``);
- ``student shrunk``: hidden units that are dead (all incoming weights zero: a constant output,
  folded exactly into the next layer's bias; or all outgoing weights zero) removed, giving a
  smaller dense MLP.

Latency: median of ``--repeats`` timed calls at each batch size, variants interleaved so that
machine noise hits them alike; ratios against the teacher are what to compare. Peak memory
(``--memory``): each variant is first saved in its deployment form (the whole module, CSR
matrices or the shrunk dense layers as such, ``torch.save``); a fresh subprocess then loads that
file and runs it, and reports the growth of its peak resident set. The kernel's peak-RSS counter
(VmHWM) is reset after torch is imported and a tiny dense + CSR model has been loaded and run
(``/proc/self/clear_refs``, Linux), so the growth counts the loaded model and its activations,
not one-time library costs, and no variant pays for building itself from the dense checkpoint.
The file sizes are reported beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from vs_plugin import load_student
from vs_plugin.export.shrink import shrink  # the same shrunk form vs-plugin export writes
from vs_plugin.models import InputSpec, build_model, load_weights


class CSRLinear(nn.Module):
    """y = x W^T + b with W stored as CSR (``torch.sparse.mm``)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight.detach().to_sparse_csr()
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (self.weight @ x.t().contiguous()).t()  # CSR @ dense: the fastest CSR path measured here
        return out if self.bias is None else out + self.bias


def to_csr(model: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(*(CSRLinear(m) if isinstance(m, nn.Linear) else m for m in model))


def load_variants(run: Path, teacher_checkpoint: Path | None) -> dict[str, nn.Module]:
    """The teacher and the three forms of the compressed student."""
    spec_data = json.loads((run / "student.json").read_text())
    channels, height, width = spec_data["input"]
    spec = InputSpec(channels, height, width, spec_data["num_classes"])
    report = json.loads((run / "report.json").read_text())
    teacher = load_weights(build_model(report["config"]["teacher"], spec), teacher_checkpoint or run / "teacher.pt").eval()
    student = load_student(run).eval()
    if not isinstance(student, nn.Sequential) or not all(isinstance(m, (nn.Flatten, nn.Linear, nn.ReLU)) for m in student):
        sys.exit("this benchmark covers MLP students (Flatten/Linear/ReLU); structured CNNs: vs-plugin compress --structured")
    return {"teacher": teacher, "student dense": student, "student CSR": to_csr(student), "student shrunk": shrink(student)}


def check_equal(variants: dict[str, nn.Module], spec_shape: tuple[int, ...]) -> None:
    x = torch.randn(64, *spec_shape)
    with torch.inference_mode():
        reference = variants["student dense"](x)
        for name in ("student CSR", "student shrunk"):
            difference = (variants[name](x) - reference).abs().max().item()
            if difference > 1e-4:
                sys.exit(f"{name} differs from the compressed student by {difference}")


def latency(variants: dict[str, nn.Module], shape: tuple[int, ...], batch_sizes: list[int], repeats: int) -> dict:
    results: dict = {name: {} for name in variants}
    with torch.inference_mode():
        for batch in batch_sizes:
            x = torch.randn(batch, *shape)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for model in variants.values():
                for _ in range(5):
                    model(x)
            for _ in range(repeats):
                for name, model in variants.items():
                    start = time.perf_counter()
                    model(x)
                    times[name].append(time.perf_counter() - start)
            for name, values in times.items():
                values.sort()
                results[name][batch] = 1e3 * values[len(values) // 2]
    return results


def parameter_bytes(model: nn.Module) -> int:
    total = 0
    for module in model.modules():
        if isinstance(module, CSRLinear):
            w = module.weight
            total += w.values().numel() * 4 + w.col_indices().numel() * 8 + w.crow_indices().numel() * 8
            total += 0 if module.bias is None else module.bias.numel() * 4
        else:
            total += sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
    return total


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _warm_up(batch: int) -> None:
    """Pay the one-time costs (torch.load's imports, first dense and CSR kernels) before measuring."""
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(8, 8), nn.ReLU(), CSRLinear(nn.Linear(8, 8)))
    buffer = io.BytesIO()
    torch.save(tiny, buffer)
    buffer.seek(0)
    with torch.inference_mode():
        torch.load(buffer, weights_only=False)(torch.randn(batch, 8))


def peak_memory_child(deployment_file: str, shape: tuple[int, ...], batch: int) -> None:
    """Peak resident-set growth while loading a saved module and running it (Linux: VmHWM after a reset)."""
    x = torch.randn(batch, *shape)
    _warm_up(batch)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    model = torch.load(deployment_file, weights_only=False)  # our own file, written by the parent process
    with torch.inference_mode():
        for _ in range(3):
            model(x)
    print(json.dumps({"peak_rss_growth_kib": _status_kib("VmHWM") - before}))


def peak_memory(variants: dict[str, nn.Module], shape: tuple[int, ...], batch: int) -> tuple[dict, dict]:
    """Per variant: peak RSS growth (KiB) of a fresh process loading its deployment file, and the file's bytes."""
    memory, file_bytes = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for index, (name, model) in enumerate(variants.items()):
            path = Path(folder) / f"variant-{index}.pt"
            torch.save(model, path)
            file_bytes[name] = path.stat().st_size
            command = [sys.executable, __file__, "--child", str(path), ",".join(map(str, shape)), str(batch)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            memory[name] = json.loads(output.strip().splitlines()[-1])["peak_rss_growth_kib"]
    return memory, file_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="output folder of vs-plugin compress (an MLP student)")
    parser.add_argument("--teacher-checkpoint", type=Path)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory, one subprocess per variant")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=3, metavar=("FILE", "SHAPE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        peak_memory_child(args.child[0], tuple(int(d) for d in args.child[1].split(",")), int(args.child[2]))
        return
    if args.run is None:
        parser.error("--run is required")
    variants = load_variants(args.run, args.teacher_checkpoint)
    shape = tuple(json.loads((args.run / "student.json").read_text())["input"])
    check_equal(variants, shape)
    times = latency(variants, shape, args.batch_sizes, args.repeats)
    sizes = {name: parameter_bytes(model) for name, model in variants.items()}
    memory, file_bytes = peak_memory(variants, shape, max(args.batch_sizes)) if args.memory else ({}, {})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; latency = median of {args.repeats} calls (ms)\n")
    header = "| variant | parameters in memory | " + " | ".join(f"batch {b} ms (x teacher)" for b in args.batch_sizes)
    header += " | deployment file | peak RSS growth, loading it |" if memory else " |"
    print(header)
    print("|---" * (2 + len(args.batch_sizes) + (2 if memory else 0)) + "|")
    for name in variants:
        cells = [f"{times[name][b]:.3f} ({times['teacher'][b] / times[name][b]:.1f}x faster)" if name != "teacher" else f"{times[name][b]:.3f}" for b in args.batch_sizes]
        row = f"| {name} | {sizes[name] / 1024:,.0f} KiB | " + " | ".join(cells)
        row += f" | {file_bytes[name] / 1024:,.0f} KiB | {memory[name] / 1024:,.1f} MiB |" if memory else " |"
        print(row)
    if args.json:
        args.json.write_text(json.dumps({"latency_ms": times, "parameter_bytes": sizes, "deployment_file_bytes": file_bytes,
                                          "peak_rss_growth_kib": memory}, indent=2))


if __name__ == "__main__":
    main()
