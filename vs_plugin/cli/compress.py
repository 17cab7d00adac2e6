"""``vs-plugin compress``: distil a teacher into a sparse student and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..api import compress_by_name
from ..errors import ConfigError
from ..pipeline.report import summary_table
from ..pipeline.resume import checkpoint_settings, resumed_values
from ..pipeline.settings import CompressSettings
from ..training.distributed import is_main_process
from .settings_args import add_settings_arguments, read_config_file

DEFAULT_TEACHER = "mlp:in-1200-1200-out"
DEFAULT_STUDENT = "mlp:in-500-50-out"
DEFAULT_DATASET = "digits"
#: Keys of a config file that describe the run rather than the method.
RUN_KEYS = ("teacher", "student", "dataset", "teacher_checkpoint", "pretrained", "reset_head", "data_dir", "image_size")


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
    parser.add_argument(
        "--teacher-checkpoint", type=Path,
        help="the teacher's trained weights: a state_dict (.pt/.pth), a timm train.py checkpoint (EMA weights preferred), "
        ".safetensors, or a timm/Hugging Face model folder (config.json + model.safetensors); otherwise it is trained",
    )
    parser.add_argument(
        "--pretrained", action="store_true", default=None,
        help="the teacher's hub weights through timm's/torchvision's own loaders (local cache first; needs the internet otherwise)",
    )
    parser.add_argument(
        "--reset-head", action="store_true", default=None,
        help="re-initialise the teacher's classifier for the data's classes and fine-tune the teacher (teacher_epochs) first",
    )
    parser.add_argument("--data-dir", type=Path, help="folder holding the dataset's files")
    parser.add_argument(
        "--image-size", type=int,
        help="input size in pixels (square); image folders otherwise take the teacher's (timm pretrained_cfg), "
        "and in-memory data resized for a timm/torchvision teacher goes through timm's pipeline",
    )
    parser.add_argument("--no-download", action="store_true", help="never try to download missing dataset files")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (also a --structured run) from its last checkpoint, with the checkpoint's settings (an option given again must "
        "match them, except --epochs, --device, --progress, --num-workers, --cache-teacher, --compile-kl, --threshold-sweep)")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous run in --out once this run has succeeded (it is kept until then)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines (--no-progress keeps the lines)")
    add_settings_arguments(parser)
    _add_structured_arguments(parser)
    parser.set_defaults(handler=run)


#: Settings of the structured path (``--structured``); defaults live in
#: ``vs_plugin.integrations.torch_pruning.StructuredSettings``. A config file may hold them under ``structured:``.
STRUCTURED_KEYS = (
    "prune_by", "target_macs", "pruning_ratio", "prune_steps", "global_pruning", "max_layer_ratio",
    "gate_lr", "finetune_epochs", "latency_repeats", "latency_batch_sizes", "latency_threads",
)


def _add_structured_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("structured pruning: channel gates + torch-pruning (with --structured)")
    group.add_argument(
        "--structured", action="store_true",
        help="train one gate per channel and remove channels physically with torch-pruning; report params, MACs and CPU "
        "latency; write OUT/report.json and OUT/pruned.json + OUT/pruned.pt",
    )
    option = dict(default=argparse.SUPPRESS)
    group.add_argument("--prune-by", dest="prune_by", choices=("macs", "ratio", "threshold"), help="what decides the channels removed (macs)", **option)
    group.add_argument("--target-macs", dest="target_macs", type=float, help="keep at most this fraction of the dense student's MACs (0.5; 0.25 = 75%% fewer)", **option)
    group.add_argument("--pruning-ratio", dest="pruning_ratio", type=float, help="fraction of channels removed with --prune-by ratio (0.5)", **option)
    group.add_argument("--prune-steps", dest="prune_steps", type=int, help="pruning steps spread over the epochs, the last at the end (1)", **option)
    group.add_argument("--global-pruning", dest="global_pruning", action=argparse.BooleanOptionalAction, help="rank channels of all layers together (on)", **option)
    group.add_argument("--max-layer-ratio", dest="max_layer_ratio", type=float, help="most a layer may lose (0.9)", **option)
    group.add_argument("--gate-lr", dest="gate_lr", type=float, help="learning rate of the channel gates (10 x --lr)", **option)
    group.add_argument("--finetune-epochs", dest="finetune_epochs", type=int, help="CE + KD epochs after pruning, on top of --epochs of gate training (default: the recipe's fine-tune share of --epochs)", **option)
    group.add_argument("--latency-repeats", dest="latency_repeats", type=int, help="timed runs per batch size, median reported (20)", **option)
    group.add_argument("--latency-batch-sizes", dest="latency_batch_sizes", type=int, nargs="+", help="batch sizes timed (1 64)", **option)
    group.add_argument("--latency-threads", dest="latency_threads", type=int, help="CPU threads while timing (torch's default)", **option)


def _structured_values(from_file, args: argparse.Namespace):
    """Structured settings from the config file's ``structured:`` and the options, or None when off."""
    if from_file is not None and not isinstance(from_file, (bool, dict)):
        raise ConfigError(f"'structured' in the config file must be true/false or a mapping of settings, got {from_file!r}")
    given = {key: getattr(args, key) for key in STRUCTURED_KEYS if hasattr(args, key)}
    if not (args.structured or from_file):
        if given:
            raise ConfigError(f"--{next(iter(given)).replace('_', '-')} applies only with --structured")
        return None
    values = dict(from_file) if isinstance(from_file, dict) else {}
    values.update(given)
    return values


def run(args: argparse.Namespace) -> int:
    values = read_config_file(args.config) if args.config else {}
    structured = _structured_values(values.pop("structured", None), args)
    run_values = {key: values.pop(key) for key in RUN_KEYS if key in values}
    for key in RUN_KEYS:
        given = getattr(args, key, None)
        if given is not None:
            run_values[key] = given
    known_settings = {f for f in CompressSettings.__dataclass_fields__}
    values.update({k: v for k, v in vars(args).items() if k in known_settings})
    if args.quiet:
        values["progress"] = False
    if args.resume and structured is None:  # the checkpoint's settings, unless given again
        saved = checkpoint_settings(args.out)
        run_values = resumed_values(saved, run_values, RUN_KEYS)
        values = resumed_values(saved, values, known_settings)
    settings = CompressSettings.from_mapping(values)
    image_size = run_values.get("image_size")
    if image_size is not None and not isinstance(image_size, int):
        raise ConfigError(f"image_size must be an integer, got {image_size!r}")
    if structured is not None:
        from ..integrations.torch_pruning.structured_settings import StructuredSettings

        structured = StructuredSettings.from_mapping(structured)
    _, report = compress_by_name(
        teacher=run_values.get("teacher", DEFAULT_TEACHER),
        student=run_values.get("student", DEFAULT_STUDENT if structured is None else "same"),
        dataset=run_values.get("dataset", DEFAULT_DATASET),
        teacher_checkpoint=run_values.get("teacher_checkpoint"),
        pretrained=bool(run_values.get("pretrained")),
        reset_head=bool(run_values.get("reset_head")),
        data_dir=run_values.get("data_dir"),
        download=not args.no_download,
        image_size=image_size,
        out_dir=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        settings=settings,
        structured=structured,
    )
    if not is_main_process():
        return 0
    print(summary_table(report))
    if structured is not None:
        from ..integrations.torch_pruning.structured_report import summary_lines

        print("\n".join(summary_lines(report)))
        print(f"wrote {args.out / 'report.json'}, {args.out / 'pruned.json'} and {args.out / 'pruned.pt'}")
        return 0
    print(f"wrote {args.out / 'report.json'}, {args.out / 'student.pt'} and {args.out / 'student.json'}")
    return 0
