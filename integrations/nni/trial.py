"""One NNI trial: the Variational Student with the settings NNI's tuner proposes.

Run by an NNI experiment (``nnictl create`` or ``vs-plugin tune``) as::

    python -m vs_plugin.integrations.nni.trial --config compare-digits.yaml [--min-compression 50]

It takes the ``variational_student`` entry of the compare config, applies the trial's
parameters, trains it on the config's teacher, starting student, data and budget, and reports
``{"default": score, "accuracy", "compression", "sparsity", "nnz"}`` with
``nni.report_final_result``. Parameters: ``threshold`` (the log_alpha ``sparse_threshold`` of every
config_list item), any loss setting of :class:`vs_plugin.ObjectiveConfig` (``temperature``,
``kd_weight``, ``kl_weight``, ``bsr_weight``...), ``kl_warmup_epochs``, ``kl_hold_epochs``,
``variational_lr``.

score = accuracy when compression vs teacher >= ``--min-compression``, else
accuracy * compression / min_compression (so the tuner cannot win by keeping every weight).
Trials of one experiment share the teacher and starting student: the first trial trains them
and stores them in the experiment's folder, the others load them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import nni

from vs_plugin.compare.config import CompareConfig, MethodEntry, load_compare_config
from vs_plugin.errors import ConfigError, VSPluginError
from vs_plugin.study import run_study
from vs_plugin.study.cells import RowResult
from vs_plugin.study.runner import shared_teacher

from .config import OBJECTIVE_KEYS
from .methods.common import SPARSITY_KEYS
from .methods.variational import SCHEDULE_KEYS, VariationalStudentMethod

THRESHOLD_PARAMETERS = ("threshold", "sparse_threshold")
ACCEPTED_PARAMETERS = THRESHOLD_PARAMETERS + OBJECTIVE_KEYS + SCHEDULE_KEYS


def apply_parameters(entry: MethodEntry, parameters: Mapping[str, Any]) -> MethodEntry:
    """The entry with the tuner's parameters: the threshold into the config_list, the rest into options."""
    unknown = sorted(set(parameters) - set(ACCEPTED_PARAMETERS))
    if unknown:
        raise ConfigError(f"search space parameter(s) {', '.join(unknown)} are not settings of the method; accepted: {', '.join(ACCEPTED_PARAMETERS)}")
    options = dict(entry.options)
    config_list = entry.config_list_copy()
    for name, value in parameters.items():
        if name in THRESHOLD_PARAMETERS:
            if not config_list:
                config_list = [{"op_types": ["Linear", "Conv1d", "Conv2d"]}]
            for item in config_list:
                for key in SPARSITY_KEYS:
                    item.pop(key, None)
                    ((item.get("target_settings") or {}).get("weight") or {}).pop(key, None)
                item["sparse_threshold"] = float(value)
        else:
            options[name] = value
    return dataclasses.replace(entry, config_list=tuple(config_list), options=options)


def pick_entry(config: CompareConfig, label: Optional[str]) -> MethodEntry:
    """The Variational Student entry to tune (the one labelled ``label``, or the only one)."""
    candidates = [m for m in config.methods if m.name == VariationalStudentMethod.name and (label is None or m.label == label)]
    if len(candidates) != 1:
        labels = [m.label for m in config.methods if m.name == VariationalStudentMethod.name]
        raise ConfigError(
            f"the compare config needs exactly one {VariationalStudentMethod.name} entry to tune"
            + (f" labelled {label!r}" if label else "") + f"; found: {', '.join(labels) or 'none'} (use --method LABEL)"
        )
    if candidates[0].targets:
        raise ConfigError(
            f"a tuned entry prunes by threshold: remove the targets of {candidates[0].label!r} (top-level targets apply "
            "to it too unless its config_list sets sparse_threshold; the threshold is a tuned parameter)"
        )
    return candidates[0]


def trial_metrics(row: RowResult, min_compression: float) -> dict[str, float]:
    """What the trial reports; ``default`` is the score the tuner maximises."""
    compression = row.compression_vs_teacher
    score = row.accuracy if compression >= min_compression else row.accuracy * compression / min_compression
    return {"default": score, "accuracy": row.accuracy, "compression": compression, "sparsity": row.sparsity, "nnz": float(row.nnz)}


def shared_cache_dir() -> Optional[Path]:
    """The running experiment's folder (trials share the teacher there), or None outside NNI."""
    output = os.environ.get("NNI_OUTPUT_DIR")
    return Path(output).parent.parent if output else None


def run_trial(config: CompareConfig, entry: MethodEntry, min_compression: float, cache_dir: Optional[Path],
              out_dir: Optional[Path] = None) -> dict[str, float]:
    """One trial: the entry as a one-row study in ``out_dir`` (the trial's NNI folder, or a
    temporary one); the teacher is trained once into ``cache_dir`` and shared by every trial."""
    study = config.replace(methods=(entry,)).to_study("trial", reference_rows=False)
    if study.teacher_checkpoint is None and cache_dir is not None:
        study = dataclasses.replace(study, teacher_checkpoint=shared_teacher(study, Path(cache_dir), log=print))
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="vs-plugin-trial-") as folder:
            return trial_metrics(run_study(study, Path(folder), progress=False)[-1], min_compression)
    return trial_metrics(run_study(study, out_dir, progress=False, log=print)[-1], min_compression)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vs_plugin.integrations.nni.trial", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="compare config holding a variational_student entry")
    parser.add_argument("--method", help="label of the entry to tune (when the config has several)")
    parser.add_argument("--min-compression", type=float, default=0.0, help="compression vs teacher below which the score is scaled down")
    args = parser.parse_args(argv)
    try:
        config = load_compare_config(args.config)
        parameters = nni.get_next_parameter() or {}
        entry = apply_parameters(pick_entry(config, args.method), parameters)
        print(f"trial parameters: {parameters}", flush=True)
        trial_dir = os.environ.get("NNI_OUTPUT_DIR")
        metrics = run_trial(config, entry, args.min_compression, shared_cache_dir(), Path(trial_dir) / "study" if trial_dir else None)
    except VSPluginError as error:
        print(f"vs-plugin trial: error: {error}", file=sys.stderr)
        return 2
    print(f"trial result: {metrics}", flush=True)
    nni.report_final_result(metrics)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by NNI
    sys.exit(main())
