"""``vs-plugin compare``: every method of a compare config on the same teacher, student, data and
budget, run as a one-seed study by the one study engine (:mod:`vs_plugin.study`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from ..compare.config import load_compare_config
from ..study import run_study
from ..errors import ConfigError
from ..training.distributed import launched_by_torchrun

#: Config settings that can be overridden on the command line (quick runs, another device).
OVERRIDES = {
    "epochs": int,
    "teacher_epochs": int,
    "dense_student_epochs": int,
    "seed": int,
    "device": str,
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare the Variational Student with NNI's pruners on one budget",
        description=(
            "Run every method of a compare config (YAML) on the same teacher, starting student, data and "
            "training budget (a one-seed study), and write OUT/summary.md, OUT/summary.csv, OUT/results.json and "
            "OUT/accuracy_vs_compression.png; finished rows are kept in OUT/rows/, so the same command continues "
            "an interrupted comparison. Methods are named as in NNI (level, l1, l2, fpgm, taylor, movement, slim) plus "
            "variational_student; other packages add theirs through the vs_plugin.methods entry-point group."
        ),
    )
    parser.add_argument("--config", type=Path, required=True, help="compare config (YAML), e.g. configs/compare-digits.yaml")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/<config name>)")
    parser.add_argument("--overwrite", action="store_true", help="recompute the rows and teacher kept in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-run lines")
    for name, kind in OVERRIDES.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, dest=name, help=f"override the config's {name}")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if launched_by_torchrun():
        raise ConfigError("vs-plugin compare runs in one process (it runs every method one after another and writes one set of tables); start it without torchrun")
    config = load_compare_config(args.config)
    changes = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    if changes:
        config = config.replace(**changes)
    out = args.out or Path("runs") / args.config.stem
    results = run_study(config.to_study(args.config.stem), out, overwrite=args.overwrite, progress=not args.quiet)
    if not args.quiet:
        tqdm.write((out / "summary.md").read_text(encoding="utf-8"))
    print(f"wrote {out / 'summary.md'}, summary.csv, results.json and accuracy_vs_compression.png ({len(results)} rows)")
    return 0
