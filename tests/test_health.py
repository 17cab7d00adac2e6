"""A student at chance or with almost no weights is called out in report.json, the summary and tables."""

import json

import pytest

from vs_plugin.cli.main import main
from vs_plugin.study.cells import RowResult
from vs_plugin.study.summary import summarise, to_markdown as experiment_markdown
from vs_plugin.metrics.health import health_warnings, is_near_chance


def test_near_chance_is_relative_to_the_class_count():
    assert is_near_chance(0.09, 10) and is_near_chance(0.18, 10) and not is_near_chance(0.25, 10)
    assert is_near_chance(0.52, 2) and not is_near_chance(0.60, 2)
    assert not is_near_chance(0.0, None)


def test_warnings_name_the_numbers():
    warnings = health_warnings(0.09, 10, 334, 90)
    assert len(warnings) == 1 and "9.00%" in warnings[0] and "10.00%" in warnings[0] and "N = 90" in warnings[0]
    assert any("almost no weights" in w for w in health_warnings(0.5, 10, 7, None))
    assert health_warnings(0.95, 10, 2000, 1000) == []


def test_a_collapsed_run_says_so_in_the_report_and_the_summary(tmp_path, capsys):
    out = tmp_path / "collapsed"
    args = ["compress", "--teacher", "mlp:in-64-out", "--student", "mlp:in-32-out", "--teacher-epochs", "2", "--epochs", "6",
            "--train-fraction", "0.05", "--kl-weight", "50", "--kl-min-samples", "0", "--kl-warmup-epochs", "0", "--quiet"]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["student"]["accuracy"] < 0.19
    assert any("near chance" in w for w in report["warnings"])
    assert "near chance" in capsys.readouterr().out


def test_tables_mark_rows_near_chance():
    result = dict(kind="compress", fraction=1.0, epochs=1, teacher_accuracy=0.9, nnz=10, weights=100, sparsity=0.9,
                  compression_vs_teacher=10.0, memory_bytes=100, memory_reduction_vs_teacher=5.0, wall_time_s=1.0)
    rows = [RowResult(label="vs", seed=s, accuracy=0.1 if s else 0.8, near_chance=bool(s), **result) for s in (0, 1, 2)]
    assert "(near chance in 2 of 3 seeds)" in experiment_markdown(summarise(rows), "t")
    # one seed (a comparison): the row with a student at chance is marked, the other is not
    single = [RowResult(label=label, seed=0, accuracy=a, near_chance=a < 0.2, **result) for label, a in (("a", 0.1), ("b", 0.9))]
    assert experiment_markdown(summarise(single), "t").count("(near chance in 1 of 1 seeds)") == 1
