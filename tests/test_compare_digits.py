"""``vs-plugin compare`` on digits: tables and plot written, expected rows, nothing written on bad input."""

import csv
from pathlib import Path

import pytest
import yaml

from vs_plugin.cli.main import main
import json

from vs_plugin.compare.config import load_compare_config
from vs_plugin.models.registry import InputSpec
from vs_plugin.study.runner import check_students

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").glob("compare-*.yaml"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
INPUTS = {"digits": InputSpec(1, 8, 8, 10), "fashion-mnist": InputSpec(1, 28, 28, 10)}

TINY = {
    "dataset": "digits",
    "teacher": "mlp:in-64-out",
    "student": "mlp:in-32-out",
    "teacher_epochs": 2,
    "dense_student_epochs": 1,
    "epochs": 1,
    "batch_size": 128,
    "targets": [0.5, 0.8],
    "device": "cpu",
    "methods": [
        {"name": "variational_student", "config_list": [{"op_types": ["Linear"], "sparse_threshold": 3.0}]},
        {"name": "level", "config_list": [{"op_types": ["Linear"]}]},
        {"name": "l1", "label": "l1-neurons", "config_list": [{"op_types": ["Linear"], "exclude_op_names": ["3"]}], "targets": [0.5]},
    ],
}


def write_config(tmp_path, data):
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_compare_writes_markdown_csv_and_plot(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compare", "--config", str(write_config(tmp_path, TINY)), "--out", str(out), "--quiet"]) == 0
    rows = read_rows(out / "summary.csv")
    assert [(r["label"], r["target"]) for r in rows] == [
        ("dense student", ""), ("variational_student", ""), ("level @ 0.5", "0.5"), ("level @ 0.8", "0.8"), ("l1-neurons @ 0.5", "0.5"),
    ]
    teacher_weights = 64 * 64 + 64 * 10
    for row in rows:
        assert 0 <= float(row["accuracy"]) <= 1 and float(row["wall_time_s"]) > 0
        assert float(row["compression_vs_teacher"]) == pytest.approx(teacher_weights / int(row["nnz"]), rel=1e-5)
    level = [r for r in rows if r["label"].startswith("level")]
    student_weights = int(rows[0]["nnz"])
    assert [int(r["nnz"]) for r in level] == [student_weights - int(64 * 32 * t) - int(32 * 10 * t) for t in (0.5, 0.8)]
    markdown = (out / "summary.md").read_text()
    assert "| level @ 0.8 |" in markdown and "| variational_student |" in markdown and "CSR" in markdown
    assert (out / "accuracy_vs_compression.png").read_bytes().startswith(PNG_MAGIC)
    assert (out / "teachers" / "seed-0.pt").is_file() and (out / "results.json").is_file()
    assert "wrote" in capsys.readouterr().out
    # A second run into the same folder reads the finished rows back instead of recomputing them.
    stamp = (out / "results.json").stat().st_mtime_ns
    cells = sorted((out / "rows").rglob("*.json"))
    stamps = [cell.stat().st_mtime_ns for cell in cells]
    assert main(["compare", "--config", str(write_config(tmp_path, TINY)), "--out", str(out), "--quiet"]) == 0
    assert [cell.stat().st_mtime_ns for cell in cells] == stamps and (out / "results.json").stat().st_mtime_ns >= stamp
    assert json.loads((out / "results.json").read_text())["results"][0]["label"] == "dense student"


def test_a_config_list_selecting_nothing_fails_before_training_and_writes_nothing(tmp_path, capsys):
    data = {**TINY, "methods": [{"name": "slim", "config_list": [{"op_types": ["BatchNorm1d"]}]}]}
    out = tmp_path / "out"
    assert main(["compare", "--config", str(write_config(tmp_path, data)), "--out", str(out), "--quiet"]) == 2
    assert "selects no module" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_configs_are_valid_for_their_student(path):
    config = load_compare_config(path)
    study = config.to_study(path.stem)
    assert {row.method for row in study.rows} >= {"variational_student", "level", "l1"}
    check_students(study, INPUTS[config.dataset])


@pytest.mark.slow
def test_shipped_digits_config_runs_end_to_end(tmp_path):
    out = tmp_path / "out"
    args = ["compare", "--config", str(ROOT / "configs" / "compare-digits.yaml"), "--out", str(out), "--quiet",
            "--epochs", "1", "--teacher-epochs", "1", "--dense-student-epochs", "1"]
    assert main(args) == 0
    methods = {row["label"].split(" @ ")[0] for row in read_rows(out / "summary.csv")}
    assert methods == {"dense student", "variational_student", "variational_student-ratio", "level", "l1", "taylor", "movement"}


def test_the_variational_student_at_a_target_is_pruned_then_fine_tuned(tmp_path):
    data = {**TINY, "epochs": 3, "targets": [0.8],
            "methods": [{"name": "variational_student", "config_list": [{"op_types": ["Linear"]}]}]}
    out = tmp_path / "out"
    assert main(["compare", "--config", str(write_config(tmp_path, data)), "--out", str(out), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    row = next(r for r in results if r["label"] == "variational_student @ 0.8")
    assert row["nnz"] == 64 * 32 + 32 * 10 - int(64 * 32 * 0.8) - int(32 * 10 * 0.8)  # NNI's per-layer ratio
    assert 0 <= row["measures"]["pruned_accuracy"] <= 1  # measured between the pruner's 2 epochs and the 1-epoch fine-tune
