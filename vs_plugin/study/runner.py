"""Run a study: every row for every seed (and training fraction), resumable cell by cell.

Layout of the output folder::

    teachers/seed-<s>.pt                  the seed's teacher (trained once, on the full training set)
    rows/fraction-<f>/seed-<s>/<row>.json one result each, written atomically when the row finishes
    summary.md, summary.csv, results.json the tables (mean ± std over seeds) and every raw result
    accuracy_vs_compression.png, low_data.png, threshold_curves.png   plots (when they apply)

A second run with the same output folder reuses finished teachers and rows, so an interrupted
experiment continues where it stopped, but only when they were computed from the same settings:
each teacher has ``teachers/seed-<s>.json`` and each row file its ``inputs``, and any difference
is refused before anything runs (:mod:`vs_plugin.study.keys`); ``overwrite`` starts afresh.
Two runs never share the folder (it is locked).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Optional

from tqdm.auto import tqdm

from ..console import bars_enabled
from ..data.registry import load_dataset
from ..errors import ConfigError
from ..io import atomic_torch_save, atomic_write, atomic_write_json, output_error
from ..folder_lock import FolderLock
from ..compare.registry import get_method
from ..models.registry import build_model
from .config import TEACHER_COPY, RowSpec, StudyConfig
from .keys import TEACHER_FORMAT, check_inputs, read_teacher_inputs, row_inputs, teacher_inputs, teacher_record_path
from .plots import accuracy_vs_compression, accuracy_vs_macs, low_data, threshold_curves
from .cells import RowResult, SeedCells, run_compress_row, train_teacher
from .summary import summarise, to_csv, to_markdown

RESULTS_FORMAT = "vs-plugin-experiment/1"


def _row_path(out_dir: Path, fraction: float, seed: int, row: RowSpec) -> Path:
    return out_dir / "rows" / f"fraction-{fraction:g}" / f"seed-{seed}" / f"{row.slug}.json"


def _teacher_path(out_dir: Path, seed: int) -> Path:
    return out_dir / "teachers" / f"seed-{seed}.pt"


def _teacher(config: StudyConfig, bundle, seed: int, out_dir: Path, log: Callable[[str], None]) -> Path:
    if config.teacher_checkpoint is not None:
        return config.teacher_checkpoint
    path = _teacher_path(out_dir, seed)
    if not path.exists():
        state, accuracy = train_teacher(config, bundle, seed)
        atomic_write_json(teacher_record_path(path), {"format": TEACHER_FORMAT, "inputs": teacher_inputs(config, seed)})
        atomic_torch_save(path, state)
        log(f"seed {seed}: teacher {config.teacher} trained {config.teacher_epochs} epochs, {100 * accuracy:.2f}%")
    return path


def shared_teacher(config: StudyConfig, folder: Path, log: Callable[[str], None] = lambda message: None) -> Path:
    """The first seed's teacher in ``folder/teachers/`` (trained when missing, refused when it was
    trained with other settings): how NNI trials of one tuning experiment share one teacher."""
    seed = config.seeds[0]
    path = _teacher_path(folder, seed)
    if path.exists():
        check_inputs(path, read_teacher_inputs(path), teacher_inputs(config, seed))
        return path
    return _teacher(config, load_dataset(config.dataset, config.data_dir, image_size=config.image_size), seed, folder, log)


def _read_row(path: Path) -> tuple[RowResult, Optional[dict]]:
    data = json.loads(path.read_text())
    inputs = data.pop("inputs", None)
    return RowResult.from_dict(data), inputs


def check_finished(config: StudyConfig, out_dir: Path) -> None:
    """Before anything runs: every finished teacher and row in ``out_dir`` must come from the
    current settings (see :mod:`vs_plugin.study.keys`)."""
    for seed in config.seeds:
        teacher = _teacher_path(out_dir, seed)
        if teacher.exists():
            check_inputs(teacher, read_teacher_inputs(teacher), teacher_inputs(config, seed))
        for fraction in config.train_fractions:
            for row in config.rows:
                path = _row_path(out_dir, fraction, seed, row)
                if path.exists():
                    check_inputs(path, _read_row(path)[1], row_inputs(config, row, seed, fraction))


def run_study(
    config: StudyConfig, out_dir: Path, *, overwrite: bool = False, progress: bool = True, log: Optional[Callable[[str], None]] = None
) -> list[RowResult]:
    """Run (or continue) ``config`` in ``out_dir``; returns every row result."""
    log = log or (tqdm.write if progress else (lambda message: None))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} exists and is not a folder")
    bundle = load_dataset(config.dataset, config.data_dir, image_size=config.image_size)
    check_students(config, bundle.spec)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise output_error(out_dir, error) from None
    lock = FolderLock(out_dir)
    try:
        if overwrite:
            for name in ("rows", "teachers"):
                shutil.rmtree(out_dir / name, ignore_errors=True)
        check_finished(config, out_dir)
        return _run_all(config, bundle, out_dir, progress, log)
    finally:
        lock.release()


def check_students(config: StudyConfig, spec) -> None:
    """Before anything is trained or written: each method row's config_list must select something
    in its student (the method's optional ``check_student``)."""
    for row in config.rows:
        if row.kind != "method":
            continue
        check = getattr(get_method(row.method), "check_student", None)
        if check is not None:
            name = config.teacher if row.student == TEACHER_COPY else row.student
            check(row.entry(), build_model(name, spec))


def _run_all(config: StudyConfig, bundle, out_dir: Path, progress: bool, log: Callable[[str], None]) -> list[RowResult]:
    results: list[RowResult] = []
    total = len(config.seeds) * len(config.train_fractions) * len(config.rows)
    with tqdm(total=total, desc=config.name, unit="row", disable=not bars_enabled(progress), dynamic_ncols=True) as bar:
        for seed in config.seeds:
            teacher_path = _teacher(config, bundle, seed, out_dir, log)
            cells: list[SeedCells] = []  # built when the seed's first unfinished kd or method cell needs it
            for fraction in config.train_fractions:
                finished: dict[str, RowResult] = {}
                for row in config.rows:
                    path = _row_path(out_dir, fraction, seed, row)
                    bar.set_postfix_str(f"{row.label}, seed {seed}, {100 * fraction:g}%")
                    if path.exists():
                        result = _read_row(path)[0]
                    else:
                        result = _run_row(config, row, seed, fraction, teacher_path, bundle, cells, finished)
                        atomic_write_json(path, {**result.to_dict(), "inputs": row_inputs(config, row, seed, fraction)})
                        log(
                            f"{row.label} (seed {seed}, {100 * fraction:g}% data): {100 * result.accuracy:.2f}%, "
                            f"{100 * result.sparsity:.2f}% sparse, {result.compression_vs_teacher:.1f}x, {result.wall_time_s:.0f} s"
                        )
                    finished[row.label] = result
                    results.append(result)
                    bar.update(1)
    write_outputs(config, results, out_dir)
    return results


def _run_row(config, row, seed, fraction, teacher_path, bundle, cells: list, finished) -> RowResult:
    if row.kind == "compress":
        return run_compress_row(config, row, seed, fraction, teacher_path)
    if not cells:
        cells.append(SeedCells(config, seed, teacher_path, bundle))
    if row.kind == "kd":
        return cells[0].run_kd(row, fraction)
    target = row.target if row.match is None else finished[row.match].sparsity
    return cells[0].run_method(row, None if target is None else round(float(target), 6), fraction)


def _notes(config: StudyConfig) -> list[str]:
    epochs = f"{config.epochs} epochs" + (
        f" ({', '.join(f'{100 * f:g}%: {e}' for f, e in sorted(config.epochs_by_fraction.items()))} epochs by training fraction)"
        if config.epochs_by_fraction else ""
    )
    seeds = (
        f"mean ± sample standard deviation over seeds {', '.join(map(str, config.seeds))}" if len(config.seeds) > 1
        else f"a single seed ({config.seeds[0]}), so no spread is given"
    )
    teacher = (
        f"the teacher loaded from {config.teacher_checkpoint}" if config.teacher_checkpoint is not None
        else f"one teacher per seed ({config.teacher}, {config.teacher_epochs} epochs"
        + (f" with a {config.teacher_lr_schedule} learning rate" if config.teacher_lr_schedule != "constant" else "") + " on "
        + ("the full training set" if config.teacher_train_fraction == 1 else f"{100 * config.teacher_train_fraction:g}% of the training set") + ")"
    )
    loss = f"CE + {config.kd_weight} KD (T = {config.temperature})" if config.kd_weight > 0 else "CE alone (kd_weight 0)"
    notes = [
        f"{seeds}; {teacher}.",
        f"budget per row: {epochs}, batch {config.batch_size}, Adam lr {config.lr}"
        + ("" if config.finetune_lr_schedule == "constant" else
           f", annealed by a {config.finetune_lr_schedule} schedule over the epochs after each row's last pruning step "
           "(the whole budget for kd rows)")
        + "; compress rows run `vs-plugin compress` with their settings (recipe, target); "
        f"kd rows train a dense student with {loss}; method rows start from "
        + ("a copy of the teacher" if any(r.student == TEACHER_COPY for r in config.rows if r.kind == "method")
           else f"a dense student first trained {config.dense_student_epochs} epochs with {loss}")
        + " and spend the budget as the method does (baselines: prune, then fine-tune).",
        "sparsity and compression count Linear/Conv weights; memory: sparse students as CSR, dense students and the teacher as dense fp32.",
    ]
    if "macs" in config.metrics:
        notes.append("MACs and params: torch-pruning's counter for one sample, of the model as deployed (structured methods: physically pruned).")
    if "latency" in config.metrics:
        notes.append("speed-up: CPU, median latency of the teacher over the student's, the two timed interleaved in one process.")
    return notes


def write_outputs(config: StudyConfig, results: list[RowResult], out_dir: Path) -> None:
    """Tables, plots and the raw results; all rendered before any is written."""
    summaries = summarise(results)
    title = f"{config.name}: {config.dataset}, teacher {config.teacher}"
    files: dict[str, bytes] = {
        "summary.md": to_markdown(summaries, title, _notes(config)).encode(),
        "summary.csv": to_csv(results).encode(),
        "accuracy_vs_compression.png": accuracy_vs_compression(summaries, title),
    }
    for name, render in (("low_data.png", low_data(summaries, title)), ("threshold_curves.png", threshold_curves(results, title)),
                         ("accuracy_vs_macs.png", accuracy_vs_macs(summaries, title))):
        if render is not None:
            files[name] = render
    for name, payload in files.items():
        atomic_write(out_dir / name, lambda tmp, payload=payload: tmp.write_bytes(payload))
    atomic_write_json(out_dir / "results.json", {"format": RESULTS_FORMAT, "name": config.name, "results": [r.to_dict() for r in results]})


__all__ = ["run_study", "write_outputs"]
