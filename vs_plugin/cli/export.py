"""``vs-plugin export RUN_DIR --format onnx``: the run's student(s) and teacher as checked ONNX files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..export.onnx import DEFAULT_OPSET
from ..export.run import DEFAULT_BATCH_SIZES, DEFAULT_REPEATS, EXPORT_REPORT, FORMATS, export_run, summary_lines


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a compressed run's models (ONNX), checked with onnxruntime",
        description=(
            "Export the compressed student of RUN_DIR (dense with zeros; also shrunk for MLPs; the pruned model of a "
            "--structured run) and its teacher to ONNX, check each file against PyTorch with onnxruntime, time them "
            f"on the CPU and write OUT/{EXPORT_REPORT}."
        ),
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="output folder of vs-plugin compress")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="file format (onnx)")
    parser.add_argument("--out", type=Path, help="where the files go (RUN_DIR/onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous export in the same place")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset ({DEFAULT_OPSET})")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(DEFAULT_BATCH_SIZES), help="batch sizes timed (1 32)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help=f"timed rounds per batch size, median reported ({DEFAULT_REPEATS})")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (its default)")
    parser.add_argument("--no-teacher", action="store_true", help="export and time the students only")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    report = export_run(
        args.run_dir, args.format, args.out, overwrite=args.overwrite, opset=args.opset, batch_sizes=args.batch_sizes,
        repeats=args.repeats, threads=args.threads, with_teacher=not args.no_teacher,
    )
    print("\n".join(summary_lines(report)))
    out = args.out or args.run_dir / "onnx"
    print(f"wrote {', '.join(str(out / m['file']) for m in report['models'].values())} and {out / EXPORT_REPORT}")
    return 0
