"""The ``vs-plugin`` command: subcommands, and one-line errors with a non-zero exit."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .._version import __version__
from ..console import cli_logging
from ..errors import VSPluginError
from ..training.distributed import shutdown
from . import compare, compress, experiment, export, listing, tune

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
SUBCOMMANDS = (compress, listing, compare, tune, experiment, export)
#: What survives an interruption (Ctrl-C), per command.
INTERRUPTED = {
    "compress": "an output folder keeps its last checkpoint (continue with --resume)",
    "tune": "the NNI experiment was stopped; start vs-plugin tune again to search anew",
    "experiment": "finished rows are kept in --out; the same command continues the experiment",
    "compare": "nothing was written; run vs-plugin compare again",
    "list": "nothing was written",
    "export": "files already exported are complete; run vs-plugin export again for the rest",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vs-plugin", description="Compress neural networks by Variational Student distillation."
    )
    parser.add_argument("--version", action="version", version=f"vs-plugin {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with cli_logging(verbose=not getattr(args, "quiet", False)):
            return args.handler(args)
    except VSPluginError as error:
        print(f"vs-plugin: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"vs-plugin: interrupted; {INTERRUPTED.get(args.command, INTERRUPTED['compress'])}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        shutdown()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
