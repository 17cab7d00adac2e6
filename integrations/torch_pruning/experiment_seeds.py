"""The structured experiment over several seeds: mean and spread of every (method, MAC target).

.. code-block:: bash

    python -m vs_plugin.integrations.torch_pruning.experiment \\
        --config configs/experiments/structured-resnet18-fashion-mnist.yaml --out runs/structured-resnet18 --seeds 0,1,2

Seed ``S`` runs the whole comparison (its own teacher included) into ``out/seed-S`` with
``settings.seed = S``. A seed whose ``results.json`` is already there is read back, not rerun, so
seeds can be run one at a time and summed up later. ``seeds.json``, ``seeds.md`` and ``seeds.png``
hold, per method and MAC target, the mean and the sample standard deviation over seeds of top-1,
top-1 right after pruning, parameters, MACs and the measured CPU speed-up.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional, Sequence

from vs_plugin.errors import ConfigError
from vs_plugin.experiments.summary import Stat
from vs_plugin.io import atomic_write, atomic_write_json, atomic_write_text
from vs_plugin.config_files import read_yaml

from .experiment import RESULTS_JSON, ExperimentConfig, run_experiment
from .experiment_plot import results_plot

SEEDS_JSON = "seeds.json"
SEEDS_MD = "seeds.md"
SEEDS_PNG = "seeds.png"


def seed_folder(out_dir: Path, seed: int) -> Path:
    return Path(out_dir) / f"seed-{seed}"


def _finished_seed(folder: Path, config: ExperimentConfig, seed: int) -> Optional[dict]:
    """A finished seed's results, checked against the config; None when the seed has not run."""
    path = folder / RESULTS_JSON
    if not path.exists():
        return None
    results = read_yaml(path, "structured experiment results")  # JSON is YAML
    if not isinstance(results, dict) or "rows" not in results:
        raise ConfigError(f"{path} is not a structured experiment's results.json; pass --overwrite to rerun seed {seed}")
    found = (results.get("teacher"), results.get("settings", {}).get("seed"))
    if found != (config.teacher, seed):
        raise ConfigError(
            f"{path} holds results for teacher {found[0]!r}, seed {found[1]!r}, not {config.teacher!r}, seed {seed}; "
            "pass --overwrite to rerun it or choose another --out"
        )
    return results


def run_seeds(config: ExperimentConfig, out_dir: Path, seeds: Sequence[int], overwrite: bool = False,
              log: Callable[[str], None] = print) -> dict:
    """Run (or read back) ``config`` once per seed into ``out_dir/seed-S``; write and return the summary."""
    if not seeds:
        raise ConfigError("--seeds needs at least one seed")
    per_seed = []
    for seed in seeds:
        folder = seed_folder(out_dir, seed)
        results = None if overwrite else _finished_seed(folder, config, seed)
        if results is None:
            log(f"=== seed {seed} ===")
            seeded = dataclasses.replace(config, settings=config.settings.replace(seed=seed))
            results = run_experiment(seeded, folder, overwrite=overwrite, log=log)
        else:
            log(f"=== seed {seed}: read back from {folder / RESULTS_JSON} ===")
        per_seed.append(results)
    summary = summarise_seeds(per_seed)
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / SEEDS_JSON, summary)
    atomic_write_text(out_dir / SEEDS_MD, seeds_table(summary))
    png = results_plot(summary)
    atomic_write(out_dir / SEEDS_PNG, lambda tmp: tmp.write_bytes(png))
    return summary


def summarise_seeds(per_seed: Sequence[dict]) -> dict:
    """One row per (method, MAC target) with the mean and the sample std over seeds (0 with one seed).

    Every seed must have the same rows: a seed that lacks one is an error, not a smaller mean."""
    if not per_seed:
        raise ConfigError("no seed results to summarise")
    keys = [(row["method"], row["target_macs_ratio"]) for row in per_seed[0]["rows"]]
    for results in per_seed[1:]:
        other = [(row["method"], row["target_macs_ratio"]) for row in results["rows"]]
        if other != keys:
            raise ConfigError(f"seed {results['settings']['seed']} has rows {other}, seed "
                              f"{per_seed[0]['settings']['seed']} has {keys}: the seeds ran different experiments")
    rows = []
    for index, (method, target) in enumerate(keys):
        members = [results["rows"][index] for results in per_seed]
        row: dict = {"method": method, "target_macs_ratio": target, "seeds": len(members)}
        for field in ("accuracy", "pruned_accuracy", "params", "macs", "macs_ratio_vs_teacher"):
            values = [m[field] for m in members]
            if any(v is None for v in values):
                row[field], row[f"{field}_std"] = None, None
                continue
            stat = Stat.of(values)
            row[field], row[f"{field}_std"] = stat.mean, stat.std
        for field in ("speedup", "latency_ms"):
            stats = {b: Stat.of([m[field][b] for m in members]) for b in members[0].get(field, {})}
            row[field] = {b: stat.mean for b, stat in stats.items()}
            row[f"{field}_std"] = {b: stat.std for b, stat in stats.items()}
        rows.append(row)
    first = per_seed[0]
    return {
        "teacher": first["teacher"], "dataset": first["dataset"], "test_split": first["test_split"],
        "input_shape": first["input_shape"], "epochs": first["epochs"],
        "seeds": [results["settings"]["seed"] for results in per_seed], "rows": rows,
        "wall_time_s": sum(results["wall_time_s"] for results in per_seed),
    }


def _mean_std(row: dict, field: str, scale: float, digits: int, suffix: str = "") -> str:
    mean, std = row.get(field), row.get(f"{field}_std")
    if mean is None:
        return "-"
    text = f"{scale * mean:.{digits}f}{suffix}"
    return f"{text} ± {scale * std:.{digits}f}" if row["seeds"] > 1 else text


def seeds_table(summary: dict) -> str:
    """Markdown: mean ± sample std over seeds per method and MAC target."""
    batches = sorted({b for row in summary["rows"] for b in row.get("speedup", {})}, key=int)
    header = ["method", "target MACs", "MAC reduction", "params (M)", "top-1 (%)", "top-1 right after pruning (%)"]
    header += [f"speed-up, batch {b}" for b in batches]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary["rows"]:
        cells = [
            row["method"],
            "-" if row["target_macs_ratio"] is None else f"{row['target_macs_ratio']:.0%}",
            f"{100 * (1 - row['macs_ratio_vs_teacher']):.1f}%",
            _mean_std(row, "params", 1e-6, 3),
            _mean_std(row, "accuracy", 100, 2),
            _mean_std(row, "pruned_accuracy", 100, 2),
        ]
        for b in batches:
            if row["target_macs_ratio"] is None:
                cells.append("1.00x")
            else:
                spread = f" ± {row['speedup_std'][b]:.2f}" if row["seeds"] > 1 else ""
                cells.append(f"{row['speedup'][b]:.2f}x{spread}")
        lines.append("| " + " | ".join(cells) + " |")
    epochs = summary["epochs"]
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines += ["", (
        f"{summary['teacher']} on {summary['dataset']} ({summary['test_split']}); seeds {seeds}: mean ± sample standard "
        f"deviation over seeds, each seed with its own teacher. Variational Student: {epochs['student']} epochs + "
        f"{epochs['finetune']} fine-tuning epochs; baselines: {epochs['baselines']} epochs. Speed-up: CPU, median "
        "latency of the dense teacher over the pruned model, timed side by side."
    )]
    return "\n".join(lines) + "\n"


__all__ = ["run_seeds", "summarise_seeds", "seeds_table", "seed_folder", "SEEDS_JSON", "SEEDS_MD", "SEEDS_PNG"]
