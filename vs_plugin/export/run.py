"""``vs-plugin export RUN_DIR --format onnx``: a compressed run's models as ONNX files, checked.

What is exported (into ``RUN_DIR/onnx/`` unless told otherwise):

- ``student.onnx``: the compressed student. Unstructured runs (``student.json``): the dense
  model with its pruned weights stored as zeros. Structured runs (``pruned.json``): the
  physically smaller model.
- ``student-shrunk.onnx`` (unstructured MLP students): the dense MLP with its dead hidden units
  removed (:func:`vs_plugin.export.shrink.shrink`), the same function.
- ``teacher.onnx``: the teacher, rebuilt as the run had it (``RUN_DIR/teacher.pt`` when it was
  trained or fine-tuned there, else the run's ``--teacher-checkpoint`` / ``--pretrained``).

Every file is run by onnxruntime on the same random batch as its PyTorch model and must agree
(:func:`vs_plugin.export.onnx.verify`). ``export.json`` records file sizes (raw and gzip, since
zeros compress), the checks and the onnxruntime CPU latency of each file, teacher beside
students; it is written last, so its presence means a complete export.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from ..errors import CheckpointError, ConfigError, VSPluginError
from ..io import atomic_write_json
from ..models.registry import InputSpec, build_model
from ..models.teacher import TeacherSource, load_teacher
from ..models.weights import load_weights
from . import onnx as onnx_io
from .shrink import is_mlp, shrink

FORMATS = ("onnx",)
EXPORT_REPORT = "export.json"
EXPORT_FORMAT = "vs-plugin-export/1"
DEFAULT_BATCH_SIZES = (1, 32)
DEFAULT_REPEATS = 20
VERIFY_BATCH = 8


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"could not read {path}: {str(error).splitlines()[0][:200]}") from None


def run_students(run_dir: Path) -> tuple[dict[str, nn.Module], InputSpec, str]:
    """The student forms of the run in ``run_dir`` ({file stem: model}), its input spec and kind."""
    from ..api import load_student

    if (run_dir / "pruned.json").is_file():
        from ..integrations.torch_pruning.serialization import load_pruned, read_spec

        spec, _ = read_spec(run_dir)
        channels, height, width = spec["input"]
        return {"student": load_pruned(run_dir)}, InputSpec(channels, height, width, spec["num_classes"]), "structured"
    if (run_dir / "student.json").is_file():
        spec = _read_json(run_dir / "student.json")
        student = load_student(run_dir)
        forms = {"student": student}
        if is_mlp(student):
            forms["student-shrunk"] = shrink(student)
        channels, height, width = spec["input"]
        return forms, InputSpec(channels, height, width, spec["num_classes"]), "unstructured"
    raise CheckpointError(f"{run_dir} holds no student.json or pruned.json; is it the output folder of vs-plugin compress?")


def run_teacher(run_dir: Path, spec: InputSpec) -> tuple[Optional[nn.Module], str]:
    """The run's teacher and where it came from, or (None, why not)."""
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        return None, f"{report_path} is missing"
    config = _read_json(report_path).get("config", {})
    name = config.get("teacher")
    if not name:
        return None, "the run's teacher was a Python module (no name in report.json)"
    if (run_dir / "teacher.pt").is_file():
        return load_weights(build_model(name, spec), run_dir / "teacher.pt").eval(), str(run_dir / "teacher.pt")
    checkpoint, pretrained = config.get("teacher_checkpoint"), bool(config.get("pretrained"))
    if checkpoint is None and not pretrained:
        return None, "the run has no teacher.pt and names no teacher checkpoint"
    try:
        teacher, _ = load_teacher(name, spec, TeacherSource(checkpoint, pretrained))
    except VSPluginError as error:
        return None, f"could not load the teacher: {error}"
    return teacher.eval(), checkpoint or "hub weights (--pretrained)"


def _sizes(path: Path) -> dict:
    data = path.read_bytes()
    return {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, compresslevel=6))}


def export_run(
    run_dir: Union[str, Path],
    format: str = "onnx",
    out_dir: Optional[Union[str, Path]] = None,
    *,
    overwrite: bool = False,
    opset: int = onnx_io.DEFAULT_OPSET,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    repeats: int = DEFAULT_REPEATS,
    threads: Optional[int] = None,
    with_teacher: bool = True,
) -> dict:
    """Export the models of ``run_dir`` (see the module docstring); returns what ``export.json`` holds.

    Args:
        run_dir: the output folder of ``vs-plugin compress`` (plain or ``--structured``).
        format: ``onnx``.
        out_dir: where the files go (default ``run_dir/onnx``).
        overwrite: replace a previous export there.
        opset: ONNX opset version.
        batch_sizes / repeats / threads: onnxruntime CPU latency settings (threads: onnxruntime's
            default when None).
        with_teacher: also export the teacher and time it beside the students.
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; accepted: {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist")
    out = Path(out_dir) if out_dir is not None else run_dir / "onnx"
    if (out / EXPORT_REPORT).exists() and not overwrite:
        raise ConfigError(f"{out} already holds an export ({EXPORT_REPORT}); pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export path {out} exists and is not a folder")
    students, spec, kind = run_students(run_dir)
    models = dict(students)
    teacher_note = "not asked for"
    if with_teacher:
        teacher, teacher_note = run_teacher(run_dir, spec)
        if teacher is not None:
            models["teacher"] = teacher
    shape = (spec.channels, spec.height, spec.width)
    inputs = torch.randn(VERIFY_BATCH, *shape, generator=torch.Generator().manual_seed(0))
    out.mkdir(parents=True, exist_ok=True)
    (out / EXPORT_REPORT).unlink(missing_ok=True)
    files, checks = {}, {}
    for name, model in models.items():
        path = onnx_io.export_onnx(model, out / f"{name}.onnx", shape, opset)
        files[name] = path
        checks[name] = onnx_io.verify(path, model, inputs)
    if "student-shrunk" in files:  # the shrunk file must compute what the compressed student does
        checks["student-shrunk"]["vs_student"] = onnx_io.verify(files["student-shrunk"], students["student"], inputs)
    timings = onnx_io.latency(files, shape, batch_sizes, repeats, threads)
    report = {
        "format": EXPORT_FORMAT,
        "run": str(run_dir),
        "kind": kind,
        "export_format": format,
        "opset": opset,
        "input_shape": list(shape),
        "teacher": teacher_note if "teacher" not in models else f"exported ({teacher_note})",
        "models": {
            name: {
                "file": path.name,
                **_sizes(path),
                "params": sum(p.numel() for p in models[name].parameters()),
                "check": checks[name],
                "latency_ms": timings[name],
            }
            for name, path in files.items()
        },
        "latency": {
            "runtime": "onnxruntime CPUExecutionProvider",
            "threads": threads or "onnxruntime default",
            "batch_sizes": list(batch_sizes),
            "repeats": repeats,
            "statistic": "median ms per batch, models interleaved round by round",
        },
        "check": f"onnxruntime vs PyTorch on {VERIFY_BATCH} random inputs, numpy.allclose(rtol={onnx_io.RTOL}, atol={onnx_io.ATOL})",
    }
    atomic_write_json(out / EXPORT_REPORT, report)
    return report


def summary_lines(report: dict) -> list[str]:
    """A short table of an export: file, size, agreement and latency per model."""
    batches = [str(b) for b in report["latency"]["batch_sizes"]]
    header = ["model", "file", "MiB", "gzip MiB", "max |diff|"] + [f"ms @ {b}" for b in batches]
    rows = [header]
    for name, entry in report["models"].items():
        rows.append([
            name, entry["file"], f"{entry['bytes'] / 2**20:.2f}", f"{entry['gzip_bytes'] / 2**20:.2f}",
            f"{entry['check']['max_abs_diff']:.1e}", *[f"{entry['latency_ms'][b]:.2f}" for b in batches],
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"teacher: {report['teacher']}; latency: {report['latency']['runtime']}, {report['latency']['statistic']}")
    return lines
