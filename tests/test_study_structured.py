"""The structured comparison as a study: torch-pruning methods at matched MACs, MACs and latency
measured on the physically pruned models, seeds run once and read back, mean ± std tables."""

import json

import pytest
import yaml

from vs_plugin.cli.main import main
from vs_plugin.study import load_study
from vs_plugin.study.cells import RowResult
from vs_plugin.study.summary import summarise, to_markdown

TINY = {
    "name": "tiny-structured", "dataset": "digits", "teacher": "mlp:in-128-64-out", "teacher_epochs": 1, "seeds": [0, 1],
    "epochs": 2, "batch_size": 128, "student": "teacher", "dense_student_epochs": 0, "targets": [0.5],
    "metrics": ["macs", "latency"], "latency": {"batch_sizes": [1], "repeats": 2},
    "rows": [
        {"label": "vs-structured", "method": "vs-structured", "options": {"finetune_epochs": 1}},
        {"label": "tp-magnitude", "method": "tp-magnitude"},
    ],
}


def _result(seed: int, label: str, accuracy: float, speedup: float) -> RowResult:
    return RowResult(label=label, kind="method", seed=seed, fraction=1.0, epochs=1, accuracy=accuracy, teacher_accuracy=0.9,
                     nnz=50, weights=100, sparsity=0.5, compression_vs_teacher=2.0, memory_bytes=400, memory_reduction_vs_teacher=2.0,
                     wall_time_s=1.0, target=0.5, measures={"macs": 50, "params": 100, "macs_ratio_vs_teacher": 0.5,
                                                            "mac_reduction_vs_teacher": 0.5, "pruned_accuracy": accuracy - 0.1,
                                                            "speedup": {"1": speedup}})


def test_the_table_gives_mean_and_sample_std_of_every_measure_over_seeds():
    summaries = summarise([_result(0, "vs-structured", 0.80, 1.5), _result(1, "vs-structured", 0.84, 2.5)])
    student = summaries[0]
    assert student.accuracy.n == 2 and student.accuracy.mean == pytest.approx(0.82)
    assert student.accuracy.std == pytest.approx(0.02 * 2 ** 0.5)
    assert student.measures["speedup"]["1"].mean == pytest.approx(2.0) and student.measures["speedup"]["1"].std == pytest.approx(0.5 ** 0.5)
    table = to_markdown(summaries, "t")
    assert "| vs-structured | 82.00 ± 2.83 |" in table
    assert "| 50.0 ± 0.0 | 0.000 ± 0.000 | 72.00 ± 2.83 | 2.00x ± 0.71 | 2 |" in table
    single = to_markdown(summarise([_result(0, "vs-structured", 0.80, 1.5)]), "t")
    assert "| 50.0 | 0.000 | 70.00 | 1.50x | 1 |" in single


@pytest.fixture(scope="module")
def structured_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("structured")
    config = folder / "study.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["experiment", "--config", str(config), "--out", str(folder / "out"), "--quiet"]) == 0
    return folder


def test_structured_rows_land_on_the_mac_target_and_are_timed(structured_study):
    out = structured_study / "out"
    results = json.loads((out / "results.json").read_text())["results"]
    assert [(r["label"], r["seed"]) for r in results] == [
        ("vs-structured", 0), ("tp-magnitude", 0), ("vs-structured", 1), ("tp-magnitude", 1)]
    for result in results:
        measures = result["measures"]
        assert 0.45 <= measures["macs_ratio_vs_teacher"] <= 0.5 and measures["speedup"]["1"] > 0
        assert measures["params"] < 200_000 and result["target"] == 0.5
    assert "pruned_accuracy" in results[0]["measures"]
    table = (out / "summary.md").read_text()
    assert "| vs-structured |" in table and "| tp-magnitude |" in table and "MAC reduction vs teacher (%)" in table
    assert "CPU speed-up, batch 1" in table and "±" in table
    assert (out / "accuracy_vs_macs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finished_cells_are_read_back_not_rerun(structured_study, capsys):
    config, out = structured_study / "study.yaml", structured_study / "out"
    cell = out / "rows" / "fraction-1" / "seed-0" / "vs-structured.json"
    stamp = cell.stat().st_mtime_ns
    assert main(["experiment", "--config", str(config), "--out", str(out), "--quiet", "--seeds", "1,0"]) == 0
    assert cell.stat().st_mtime_ns == stamp
    # Another setting for the same folder is refused before anything runs.
    changed = {**TINY, "epochs": 3}
    config.write_text(yaml.safe_dump(changed))
    assert main(["experiment", "--config", str(config), "--out", str(out), "--quiet"]) == 2
    assert "computed with other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "--config", str(config), "--out", str(out), "--seeds", "0,0"])
    assert exit_info.value.code == 2 and "lists a seed twice" in capsys.readouterr().err


def test_unknown_methods_and_metrics_are_refused_naming_the_known_ones(tmp_path, capsys):
    for change, message in (({"rows": [{"label": "x", "method": "tp-nope", "target": 0.5}]}, "unknown compression method 'tp-nope'"),
                            ({"metrics": ["flops"]}, "unknown study metric 'flops'")):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**TINY, **change}))
        assert main(["experiment", "--config", str(path), "--out", str(tmp_path / "bad"), "--quiet"]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_shipped_structured_studies_are_valid():
    from pathlib import Path

    for name in ("structured-resnet18-fashion-mnist", "structured-convnext-fashion-mnist"):
        config = load_study(Path(__file__).resolve().parents[1] / "configs" / "experiments" / f"{name}.yaml")
        assert {r.method for r in config.rows} == {"vs-structured", "tp-magnitude", "tp-group-norm"}
        assert config.metrics == ("accuracy", "footprint", "macs", "latency") and config.dense_student_epochs == 0
