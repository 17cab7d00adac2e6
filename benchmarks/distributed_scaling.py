"""Throughput of student training with 1 and N processes (torchrun, gloo), measured in one run.

    python benchmarks/distributed_scaling.py --dataset fashion-mnist --epochs 2 --processes 1 2

For each process count it runs ``vs-plugin compress`` on the paper's MLP pair with a fixed
teacher checkpoint (trained once first), reads the per-epoch student times from report.json and
prints samples per second and the speed-up against one process. On a CPU machine each process
gets ``cores / N`` threads, so the comparison is at equal total cores. Results go to
``--out/scaling.json`` and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = ["--teacher", "mlp:784-1200-1200-10", "--student", "mlp:784-500-50-10"]


def run(command: list[str], threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="vs-scaling-")))
    args = parser.parse_args()
    if args.dataset == "digits":
        MODELS[1], MODELS[3] = "mlp:in-1200-1200-out", "mlp:in-500-50-out"
    teacher_dir = args.out / "teacher"
    if not (teacher_dir / "teacher.pt").exists():
        run([sys.executable, "-m", "vs_plugin", "compress", *MODELS, "--dataset", args.dataset, "--teacher-epochs", "2",
             "--epochs", "1", "--quiet", "--out", str(teacher_dir), "--overwrite"], args.cores)
    rows = []
    for count in args.processes:
        out = args.out / f"p{count}"
        common = [*MODELS, "--dataset", args.dataset, "--teacher-checkpoint", str(teacher_dir / "teacher.pt"),
                  "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--quiet", "--out", str(out), "--overwrite"]
        if count == 1:
            command = [sys.executable, "-m", "vs_plugin", "compress", *common]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={count}", "-m", "vs_plugin", "compress", *common]
        run(command, max(1, args.cores // count))
        report = json.loads((out / "report.json").read_text())
        seconds = [epoch["seconds"] for epoch in report["history"]["student"]]
        steady = seconds[1:] or seconds  # the first epoch includes warm-up
        samples = report["dataset"]["train_samples"]
        rows.append({"processes": count, "threads_per_process": max(1, args.cores // count),
                     "epoch_seconds": sum(steady) / len(steady), "samples_per_second": samples / (sum(steady) / len(steady)),
                     "student_accuracy": report["student"]["accuracy"], "student_sparsity": report["student"]["sparsity"]})
    base = rows[0]["samples_per_second"]
    print("| processes | threads each | s / epoch | samples / s | speed-up | accuracy | sparsity |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        row["speedup"] = row["samples_per_second"] / base
        print(f"| {row['processes']} | {row['threads_per_process']} | {row['epoch_seconds']:.2f} | {row['samples_per_second']:.0f} | "
              f"{row['speedup']:.2f}x | {100 * row['student_accuracy']:.2f}% | {100 * row['student_sparsity']:.2f}% |")
    (args.out / "scaling.json").write_text(json.dumps(rows, indent=2))
    print(f"\n(details in {args.out / 'scaling.json'})")


if __name__ == "__main__":
    main()
