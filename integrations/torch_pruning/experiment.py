"""One command for the structured comparison: the Variational Student against torch-pruning
baselines at matched MACs, on one dataset and teacher.

.. code-block:: bash

    python -m vs_plugin.integrations.torch_pruning.experiment \\
        --config configs/tp_fashion_mnist_resnet18.yaml --out runs/tp-fashion-mnist-resnet18

The teacher is trained once (or loaded). For every MAC target, the structured Variational
Student (``compress --structured``) and each baseline start from a copy of that teacher, train
for the same number of epochs (the baselines get the student's ``epochs + finetune_epochs``)
and are measured the same way in the same process (accuracy, parameters, MACs, CPU latency of
the dense teacher and the pruned model). Each run's folder holds ``report.json`` (baselines: the
``structured`` section) and ``pruned.json`` + ``pruned.pt``; ``results.json`` and the
``results.md`` table sum them up.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from vs_plugin.cli.experiment import seed_list
from vs_plugin.config_files import read_yaml

from vs_plugin.data.registry import load_dataset
from vs_plugin.errors import ConfigError, VSPluginError
from vs_plugin.io import atomic_torch_save, atomic_write, atomic_write_json, atomic_write_text
from vs_plugin.metrics.accuracy import evaluate_accuracy
from vs_plugin.models.registry import build_model
from vs_plugin.models.weights import load_weights
from vs_plugin.pipeline.validation import resolve_device
from vs_plugin.pipeline.settings import CompressSettings
from vs_plugin.training.reproducibility import seed_everything

from .baselines import get_baseline, run_tp_baseline
from .experiment_plot import results_plot
from .serialization import PRUNED_SPEC, save_pruned
from .structured import REPORT, loaders, structured_from_modules, train_teacher
from .structured_report import model_size, structured_section
from .structured_settings import StructuredSettings

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "results.png"
EXPERIMENT_KEYS = ("teacher", "student", "dataset", "image_size", "data_dir", "teacher_checkpoint",
                   "settings", "structured", "targets", "baselines", "baseline_epochs")


@dataclass(frozen=True)
class ExperimentConfig:
    """What to compare. ``settings``/``structured`` are those of ``compress --structured``;
    ``targets`` are MAC ratios (pruned / dense; 0.5 and 0.25 = 50% and 75% fewer MACs)."""

    teacher: str
    dataset: str
    settings: CompressSettings
    structured: StructuredSettings
    targets: tuple[float, ...] = (0.5, 0.25)
    baselines: tuple[str, ...] = ("tp-magnitude", "tp-group-norm")
    student: Optional[str] = None
    image_size: Optional[int] = None
    data_dir: Optional[str] = None
    teacher_checkpoint: Optional[str] = None
    baseline_epochs: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.targets or not all(isinstance(t, (int, float)) and 0 < t <= 1 for t in self.targets):
            raise ConfigError(f"targets must be MAC ratios in (0, 1], got {list(self.targets)}")
        for name in self.baselines:
            get_baseline(name)
        if self.baseline_epochs is not None and self.baseline_epochs < 0:
            raise ConfigError(f"baseline_epochs must be >= 0, got {self.baseline_epochs}")

    @property
    def epochs_budget(self) -> int:
        """Epochs every baseline trains: the student's training plus fine-tuning epochs by default."""
        if self.baseline_epochs is not None:
            return self.baseline_epochs
        return self.settings.epochs + self.structured.finetune_epochs

    @classmethod
    def from_mapping(cls, values: dict) -> "ExperimentConfig":
        unknown = sorted(set(values) - set(EXPERIMENT_KEYS))
        if unknown:
            raise ConfigError(f"unknown experiment key(s) {', '.join(unknown)}; accepted: {', '.join(EXPERIMENT_KEYS)}")
        for required in ("teacher", "dataset"):
            if not values.get(required):
                raise ConfigError(f"the experiment config needs {required!r}")
        values = dict(values)
        values["settings"] = CompressSettings.from_mapping(values.get("settings") or {})
        values["structured"] = StructuredSettings.from_mapping(values.get("structured") or {})
        for key in ("targets", "baselines"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def read_experiment(path: Path) -> ExperimentConfig:
    """The experiment described by a YAML file."""
    data = read_yaml(path, "experiment config")
    if not isinstance(data, dict):
        raise ConfigError(f"experiment config {path} must hold a mapping")
    return ExperimentConfig.from_mapping(data)


def _row(method: str, target: Optional[float], section: dict, accuracy: float, pruned_accuracy: Optional[float], folder: str) -> dict:
    student = section["student"]
    return {
        "method": method,
        "target_macs_ratio": target,
        "accuracy": accuracy,
        "pruned_accuracy": pruned_accuracy,
        "params": student["params"],
        "macs": student["macs"],
        "macs_ratio_vs_teacher": section["macs_ratio_vs_teacher"],
        "latency_ms": {b: t["student"] for b, t in section["latency"]["batch_sizes"].items()},
        "teacher_latency_ms": {b: t["teacher"] for b, t in section["latency"]["batch_sizes"].items()},
        "speedup": {b: t["speedup"] for b, t in section["latency"]["batch_sizes"].items()},
        "folder": folder,
    }


def run_experiment(config: ExperimentConfig, out_dir: Path, overwrite: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run the comparison described by ``config`` into ``out_dir``; returns the results."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if (out_dir / RESULTS_JSON).exists() and not overwrite:
        raise ConfigError(f"{out_dir} already holds results; pass --overwrite to replace them")
    settings, structured = config.settings, config.structured
    device = resolve_device(settings.device)
    seed_everything(settings.seed)
    bundle = load_dataset(config.dataset, Path(config.data_dir) if config.data_dir else None, image_size=config.image_size)
    teacher = build_model(config.teacher, bundle.spec)
    train_loader, test_loader, _ = loaders(bundle.train, bundle.test, settings)
    teacher_history: list = []
    if config.teacher_checkpoint:
        load_weights(teacher, config.teacher_checkpoint)
    else:
        teacher_history = train_teacher(teacher, train_loader, test_loader, settings, device, log)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(out_dir / "teacher.pt", teacher.state_dict())
    teacher.to(device).eval()
    input_shape = (bundle.spec.channels, bundle.spec.height, bundle.spec.width)
    teacher_accuracy = evaluate_accuracy(teacher, test_loader, device)
    rows = [{"method": "teacher (dense)", "target_macs_ratio": None, "accuracy": teacher_accuracy, "pruned_accuracy": None,
             **model_size(teacher, input_shape), "macs_ratio_vs_teacher": 1.0, "folder": None}]
    student_arch = None if config.student in (None, "same") else config.student
    for target in config.targets:
        tag = f"macs{target:.2f}"
        folder = f"vs-structured-{tag}"
        log(f"== Variational Student (structured), target {target:.0%} of the MACs ==")
        seed_everything(settings.seed)
        student = None if student_arch is None else build_model(student_arch, bundle.spec)
        _, report = structured_from_modules(
            teacher, bundle.train, bundle.test, bundle.spec, settings=settings, structured=structured.replace(prune_by="macs", target_macs=target),
            student=student, names={"teacher": config.teacher, "student": student_arch, "dataset": bundle.name},
            test_split=bundle.test_split, teacher_history=teacher_history, out_dir=out_dir / folder, overwrite=overwrite, log=log,
        )
        section = report["structured"]
        rows.append(_row("vs-structured", target, section, report["student"]["accuracy"], section["pruned_accuracy"], folder))
        for method in config.baselines:
            folder = f"{method}-{tag}"
            log(f"== {method}, target {target:.0%} of the MACs, {config.epochs_budget} epochs ==")
            seed_everything(settings.seed)
            student = copy.deepcopy(teacher) if student_arch is None else build_model(student_arch, bundle.spec).to(device)
            result = run_tp_baseline(
                method, student, teacher if settings.objective_config().uses_teacher else None, train_loader,
                torch.zeros(1, *input_shape, device=device), target_macs_ratio=target, epochs=config.epochs_budget, lr=settings.lr,
                objective=settings.objective_config(), device=device, test_loader=test_loader,
                global_pruning=structured.global_pruning, max_layer_ratio=structured.max_layer_ratio, progress=settings.progress, log=log,
            )
            student.eval()
            accuracy = evaluate_accuracy(student, test_loader, device)
            dense = model_size(teacher, input_shape) if student_arch is None else {"params": None, "macs": result.macs_before}
            section = structured_section(teacher, student, dense, input_shape, structured,
                                         {"method": method, "target_macs_ratio": target, "pruned_accuracy": result.pruned_accuracy,
                                          "accuracy": accuracy, "epochs": config.epochs_budget, "history": result.history})
            save_pruned(student, out_dir / folder / PRUNED_SPEC, result.plan, input_shape=input_shape, num_classes=bundle.spec.num_classes,
                        model_name=student_arch or config.teacher, extra={"method": method, "accuracy": accuracy})
            atomic_write_json(out_dir / folder / REPORT, {"structured": section, "teacher_accuracy": teacher_accuracy})
            rows.append(_row(method, target, section, accuracy, result.pruned_accuracy, folder))
    if len(rows) > 1:  # the teacher's latency as measured beside the first pruned model
        rows[0]["latency_ms"] = dict(rows[1]["teacher_latency_ms"])
        rows[0]["speedup"] = {b: 1.0 for b in rows[0]["latency_ms"]}
    results = {
        "teacher": config.teacher, "dataset": bundle.name, "test_split": bundle.test_split, "input_shape": list(input_shape),
        "epochs": {"student": settings.epochs, "finetune": structured.finetune_epochs, "baselines": config.epochs_budget},
        "settings": settings.to_dict(), "structured": structured.to_dict(), "rows": rows,
        "wall_time_s": time.perf_counter() - started,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / RESULTS_JSON, results)
    atomic_write_text(out_dir / RESULTS_MD, results_table(results))
    png = results_plot(results)
    atomic_write(out_dir / RESULTS_PNG, lambda tmp: tmp.write_bytes(png))
    return results


def results_table(results: dict) -> str:
    """A Markdown table of the results (one row per method and MAC target)."""
    batches = sorted({b for row in results["rows"] for b in row.get("latency_ms", {})}, key=int)
    header = ["method", "target MACs", "MACs (M)", "MAC reduction", "params (M)", "top-1", "top-1 right after pruning"]
    header += [f"CPU ms, batch {b}" for b in batches] + [f"speed-up, batch {b}" for b in batches]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["rows"]:
        cells = [
            row["method"],
            "-" if row["target_macs_ratio"] is None else f"{row['target_macs_ratio']:.0%}",
            f"{row['macs'] / 1e6:.2f}",
            f"{1 - row['macs_ratio_vs_teacher']:.1%}",
            f"{row['params'] / 1e6:.3f}",
            f"{row['accuracy']:.2%}",
            "-" if row["pruned_accuracy"] is None else f"{row['pruned_accuracy']:.2%}",
        ]
        cells += [f"{row['latency_ms'][b]:.2f}" if b in row.get("latency_ms", {}) else "-" for b in batches]
        cells += [f"{row['speedup'][b]:.2f}x" if b in row.get("speedup", {}) else "-" for b in batches]
        lines.append("| " + " | ".join(cells) + " |")
    epochs = results["epochs"]
    lines.append("")
    lines.append(
        f"{results['teacher']} on {results['dataset']} ({results['test_split']}); input {results['input_shape']}. "
        f"Variational Student: {epochs['student']} epochs + {epochs['finetune']} fine-tuning epochs; "
        f"baselines: {epochs['baselines']} epochs. Latency: CPU, median ms per batch; each speed-up is against the teacher "
        "timed beside that model (the teacher row shows its timing beside the first one). MACs: torch-pruning's counter, one sample."
    )
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vs_plugin.integrations.torch_pruning.experiment",
        description="Structured Variational Student vs torch-pruning baselines at matched MACs.",
    )
    parser.add_argument("--config", type=Path, required=True, help="experiment YAML (see configs/tp_*.yaml)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace previous results in --out")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    parser.add_argument(
        "--seeds", type=seed_list, default=None, metavar="S[,S...]",
        help="run once per seed into OUT/seed-S (finished seeds are read back) and write seeds.md/.json/.png: mean ± std",
    )
    args = parser.parse_args(argv)
    log = (lambda m: None) if args.quiet else print
    try:
        config = read_experiment(args.config)
        if args.seeds is not None:
            # imported here, not at the top: experiment_seeds imports this module
            from .experiment_seeds import SEEDS_JSON, SEEDS_MD, run_seeds, seeds_table

            print(seeds_table(run_seeds(config, args.out, args.seeds, args.overwrite, log=log)))
            print(f"wrote {args.out / SEEDS_JSON}, {args.out / SEEDS_MD} and seeds.png")
            return 0
        results = run_experiment(config, args.out, args.overwrite, log=log)
    except VSPluginError as error:
        print(f"vs-plugin: error: {error}", file=sys.stderr)
        return 2
    print(results_table(results))
    print(f"wrote {args.out / RESULTS_JSON} and {args.out / RESULTS_MD}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["ExperimentConfig", "read_experiment", "run_experiment", "results_table", "main"]
