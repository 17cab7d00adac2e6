"""``vs-plugin tune``: NNI hyper-parameter search of the Variational Student's settings.

Takes NNI's own experiment YAML (the file ``nnictl create --config`` takes), runs it on this
machine and prints every trial and the best one's settings. NNI's manager listens on 127.0.0.1
only, unless ``--listen-all``. NNI is imported only here.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from ..console import is_terminal
from ..errors import ConfigError
from ..training.distributed import launched_by_torchrun

DEFAULT_PORT = 8080


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="search the method's settings with an NNI experiment (TPE) on this machine",
        description=(
            "Run an NNI experiment config (NNI's YAML, e.g. configs/tune-digits.yml) locally: each trial trains "
            "the Variational Student with the tuner's settings and reports accuracy and compression; the best "
            "trial's settings are printed. The NNI manager is always stopped at the end."
        ),
    )
    parser.add_argument("--config", type=Path, required=True, help="NNI experiment config (YAML)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port of NNI's manager and web UI on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--max-trials", type=int, help="override the config's maxTrialNumber")
    parser.add_argument("--work-dir", type=Path, help="override the config's experimentWorkingDirectory (NNI's logs and trial output)")
    parser.add_argument("--timeout", type=float, help="stop the experiment after this many seconds")
    parser.add_argument(
        "--listen-all", action="store_true",
        help="let NNI's web UI and REST API listen on every network interface (they have no login; default: 127.0.0.1 only)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if launched_by_torchrun():
        raise ConfigError("vs-plugin tune runs in one process (NNI's manager starts the trials itself); start it without torchrun")
    if args.max_trials is not None and args.max_trials < 1:
        raise ConfigError(f"--max-trials must be >= 1, got {args.max_trials}")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be a TCP port number, got {args.port}")
    from ..integrations.nni.experiment import best_trial, load_experiment_config, optimize_mode, run_experiment

    if not is_terminal(sys.stdout):
        plain_nni_console()
    config = load_experiment_config(args.config)
    if args.listen_all:
        print(f"vs-plugin: warning: --listen-all exposes NNI's web UI and REST API on port {args.port} of every network "
              "interface, with no login", file=sys.stderr)
    outcomes = run_experiment(
        config, port=args.port, max_trials=args.max_trials, work_dir=args.work_dir, timeout_s=args.timeout, listen_all=args.listen_all
    )
    for outcome in sorted(outcomes, key=lambda o: o.trial_id):
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in outcome.metrics.items() if isinstance(v, (int, float)))
        print(f"trial {outcome.trial_id}: {json.dumps(outcome.parameters, sort_keys=True)} -> {metrics}")
    best = best_trial(outcomes, optimize_mode(config))
    print(f"best trial {best.trial_id} (score {best.score:.4f}): {json.dumps(best.parameters, sort_keys=True)}")
    return 0


def plain_nni_console() -> None:
    """NNI's console log without its colour codes (for logs and pipes): same lines, plain text.

    NNI prints its own log lines to stdout through a handler that always adds ANSI colours;
    ``nni.runtime.log.silence_stdout`` removes it and a plain handler takes its place.
    """
    from nni.runtime.log import silence_stdout

    silence_stdout()
    nni_logger = logging.getLogger("nni")
    for handler in list(nni_logger.handlers):
        if getattr(handler, "_vs_plugin_plain", False):
            nni_logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_PlainFormatter("[%(asctime)s] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler._vs_plugin_plain = True  # type: ignore[attr-defined]
    nni_logger.addHandler(handler)


class _PlainFormatter(logging.Formatter):
    """Drops NNI's colour escapes (``${GREEN}``) from messages."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return re.sub(r"\$\{[A-Z_]+\}", "", super().formatMessage(record))
