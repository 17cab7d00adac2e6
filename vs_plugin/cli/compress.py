"""``vs-plugin compress``: distil a teacher into a sparse student and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from ..api import compress_by_name
from ..errors import ConfigError
from ..pipeline.report import summary_table
from ..pipeline.settings import CompressSettings
from ..training.distributed import is_main_process
from .settings_args import add_settings_arguments, read_config_file

DEFAULT_TEACHER = "mlp:in-1200-1200-out"
DEFAULT_STUDENT = "mlp:in-500-50-out"
DEFAULT_DATASET = "digits"
#: Keys of a config file that describe the run rather than the method.
RUN_KEYS = ("teacher", "student", "dataset", "teacher_checkpoint", "data_dir", "image_size")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="distil a teacher into a sparse variational student",
        description=(
            "Train (or load) a teacher, distil it into a sparse Variational Student and write "
            "OUT/report.json, OUT/student.pt + OUT/student.json (and OUT/teacher.pt when trained here)."
        ),
    )
    parser.add_argument("--config", type=Path, help="YAML/JSON file of settings, or a report.json to repeat a run")
    parser.add_argument("--teacher", help=f"teacher model name (default {DEFAULT_TEACHER})")
    parser.add_argument("--student", help=f"student model name, or 'same' for a copy of the teacher (default {DEFAULT_STUDENT})")
    parser.add_argument("--dataset", help=f"dataset name (default {DEFAULT_DATASET})")
    parser.add_argument("--teacher-checkpoint", type=Path, help="local file with the teacher's trained weights (otherwise it is trained)")
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's files")
    parser.add_argument("--image-size", type=int, help="resize images to this square size")
    parser.add_argument("--no-download", action="store_true", help="never try to download missing dataset files")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines (--no-progress keeps the lines)")
    add_settings_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    values = read_config_file(args.config) if args.config else {}
    run_values = {key: values.pop(key) for key in RUN_KEYS if key in values}
    for key in RUN_KEYS:
        given = getattr(args, key, None)
        if given is not None:
            run_values[key] = given
    known_settings = {f for f in CompressSettings.__dataclass_fields__}
    values.update({k: v for k, v in vars(args).items() if k in known_settings})
    if args.quiet:
        values["progress"] = False
    settings = CompressSettings.from_mapping(values)
    image_size = run_values.get("image_size")
    if image_size is not None and not isinstance(image_size, int):
        raise ConfigError(f"image_size must be an integer, got {image_size!r}")
    student, report = compress_by_name(
        teacher=run_values.get("teacher", DEFAULT_TEACHER),
        student=run_values.get("student", DEFAULT_STUDENT),
        dataset=run_values.get("dataset", DEFAULT_DATASET),
        teacher_checkpoint=run_values.get("teacher_checkpoint"),
        data_dir=run_values.get("data_dir"),
        download=not args.no_download,
        image_size=image_size,
        out_dir=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        settings=settings,
        log=None if args.quiet else tqdm.write,
    )
    if not is_main_process():
        return 0
    print(summary_table(report))
    print(f"wrote {args.out / 'report.json'}, {args.out / 'student.pt'} and {args.out / 'student.json'}")
    return 0
