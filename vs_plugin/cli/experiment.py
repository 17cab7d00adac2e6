"""``vs-plugin experiment``: run a reproducible experiment config (rows x seeds x data fractions)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import ConfigError
from ..study import load_study, run_study
from ..training.distributed import launched_by_torchrun


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="run an experiment config: rows x seeds x training fractions, mean ± spread tables and plots",
        description=(
            "Run every row of an experiment config (configs/experiments/*.yaml) for every seed and training "
            "fraction; write OUT/summary.md, OUT/summary.csv, OUT/results.json and PNG plots. Finished rows are "
            "kept in OUT/rows/, so running the same command again continues an interrupted experiment."
        ),
    )
    parser.add_argument("--config", type=Path, required=True, help="experiment YAML")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="discard finished rows and teachers in --out first")
    parser.add_argument(
        "--seeds", type=seed_list, default=None, metavar="S[,S...]",
        help="run only these seeds instead of the config's (e.g. 0 for a quick first pass; rerun without it to add the rest)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-row lines")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if launched_by_torchrun():
        raise ConfigError("vs-plugin experiment runs in one process (rows one after another); start it without torchrun")
    config = load_study(args.config)
    if args.seeds is not None:
        config = config.with_seeds(args.seeds)
    run_study(config, args.out, overwrite=args.overwrite, progress=not args.quiet)
    print((args.out / "summary.md").read_text())
    print(f"wrote {args.out / 'summary.md'}, summary.csv, results.json and plots")
    return 0


def seed_list(text: str) -> tuple[int, ...]:
    """``--seeds``' argparse type: comma-separated distinct integers such as ``0`` or ``0,1,2``."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers such as 0 or 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds lists a seed twice: {text!r}")
    return seeds
