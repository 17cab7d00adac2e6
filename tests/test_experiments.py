"""``vs-plugin experiment``: rows x seeds x fractions, mean ± spread, matched targets, resume."""

import json

import pytest
import yaml

from vs_plugin.cli.main import main
from vs_plugin.errors import ConfigError
from vs_plugin.study import parse_study as parse_experiment

TINY = {
    "name": "tiny",
    "dataset": "digits",
    "teacher": "mlp:in-64-out",
    "teacher_epochs": 2,
    "seeds": [0, 1],
    "epochs": 2,
    "batch_size": 64,
    "dense_student_epochs": 1,
    "student": "mlp:in-32-out",
    "settings": {"threshold_sweep": [1.0, 3.0, 5.0]},
    "rows": [
        {"label": "VS", "method": "compress"},
        {"label": "Sparse VD alone", "method": "compress", "settings": {"kd_weight": 0.0}},
        {"label": "KD alone", "method": "kd"},
        {"label": "Level at VS", "method": "level", "config_list": [{"op_types": ["Linear"]}], "match": "VS"},
    ],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("experiment")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    assert main(["experiment", "--config", str(config), "--out", str(folder / "out"), "--quiet"]) == 0
    return folder


def test_tables_plots_and_raw_results(tiny_run):
    out = tiny_run / "out"
    for name in ("summary.md", "summary.csv", "results.json", "accuracy_vs_compression.png", "threshold_curves.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())["results"]
    assert len(results) == 2 * 4  # seeds x rows
    markdown = (out / "summary.md").read_text()
    for label in ("VS", "Sparse VD alone", "KD alone", "Level at VS"):
        assert f"| {label} |" in markdown
    assert "±" in markdown and "| 2 |" in markdown  # two seeds each
    by = {(r["label"], r["seed"]): r for r in results}
    for seed in (0, 1):
        # The baseline is pruned to exactly the sparsity the VS row reached with the same seed.
        assert by[("Level at VS", seed)]["target"] == pytest.approx(by[("VS", seed)]["sparsity"], abs=1e-6)
        assert by[("Level at VS", seed)]["sparsity"] == pytest.approx(by[("VS", seed)]["sparsity"], abs=0.01)
        assert by[("KD alone", seed)]["sparsity"] == 0
        assert len(by[("VS", seed)]["threshold_sweep"]) == 3
    assert by[("VS", 0)]["accuracy"] != by[("VS", 1)]["accuracy"] or by[("VS", 0)]["nnz"] != by[("VS", 1)]["nnz"]


def test_rerun_reuses_finished_rows(tiny_run):
    out = tiny_run / "out"
    row = out / "rows" / "fraction-1" / "seed-0" / "vs.json"
    before = row.stat().st_mtime_ns
    assert main(["experiment", "--config", str(tiny_run / "tiny.yaml"), "--out", str(out), "--quiet"]) == 0
    assert row.stat().st_mtime_ns == before


def test_low_data_fractions_and_plot(tmp_path):
    config = {**TINY, "seeds": [0], "train_fractions": [0.1, 1.0], "epochs_by_fraction": {0.1: 3},
              "rows": [{"label": "VS", "method": "compress"}, {"label": "KD alone", "method": "kd"},
                       {"label": "Level at VS", "method": "level", "config_list": [{"op_types": ["Linear"]}], "match": "VS"}]}
    path = tmp_path / "low.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["experiment", "--config", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert (tmp_path / "out" / "low_data.png").stat().st_size > 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    low = [r for r in results if r["fraction"] == 0.1]
    assert {r["epochs"] for r in low} == {3} and len(low) == 3
    assert "**10% of the training set**" in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"rows": [{"label": "x", "method": "magic"}]}, "unknown compression method 'magic'"),
        ({"rows": [{"label": "x", "kind": "compress"}]}, "'kind' is now 'method'"),
        ({"rows": [{"label": "a", "method": "compress"}, {"label": "x", "method": "level", "target": 0.5, "match": "a"}]}, "not both"),
        ({"rows": [{"label": "x", "method": "level", "config_list": [{"op_types": ["Linear"]}]}]}, "needs 'target', 'targets' or 'match'"),
        ({"rows": [{"label": "a", "method": "kd"}, {"label": "b", "method": "level", "match": "a"}]}, "earlier compress row"),
        ({"rows": [{"label": "a", "method": "compress", "settings": {"temprature": 1}}]}, "unknown setting"),
        ({"seeds": []}, "at least one seed"),
        ({"epochs": "long"}, "epochs must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"colour": "red"}, "unknown study key"),
        ({"rows": [{"label": "a", "method": "kd"}, {"label": "a", "method": "kd"}]}, "unique"),
    ],
)
def test_bad_experiment_configs(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_experiment({**TINY, **change})


def test_seeds_override_runs_only_those_seeds(tiny_run, tmp_path):
    out = tmp_path / "one-seed"
    config = str(tiny_run / "tiny.yaml")
    assert main(["experiment", "--config", config, "--out", str(out), "--quiet", "--seeds", "1"]) == 0
    assert sorted(p.name for p in (out / "rows" / "fraction-1").iterdir()) == ["seed-1"]
    assert {r["seed"] for r in json.loads((out / "results.json").read_text())["results"]} == {1}
    table = (out / "summary.md").read_text()
    assert "| VS |" in table and "±" not in table  # no spread is shown for a single seed


@pytest.mark.parametrize("seeds", ["0,x", "1,1", ""])
def test_bad_seeds_override_is_refused(tiny_run, tmp_path, seeds, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "--config", str(tiny_run / "tiny.yaml"), "--out", str(tmp_path / "o"), "--seeds", seeds])
    assert exit_info.value.code != 0
    assert "--seeds" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_row_pruned_to_nothing_has_no_compression_ratio(tmp_path):
    from vs_plugin.study.cells import RowResult
    from vs_plugin.study.summary import summarise, to_markdown

    common = dict(kind="compress", fraction=0.05, epochs=1, teacher_accuracy=0.9, weights=1000, sparsity=1.0,
                  memory_bytes=10, memory_reduction_vs_teacher=400.0, wall_time_s=1.0)
    fields = set(RowResult.__dataclass_fields__)
    results = [
        RowResult(**{k: v for k, v in dict(common, label="VS", seed=seed, accuracy=0.1, nnz=0, compression_vs_teacher=1000.0).items() if k in fields})
        for seed in (0, 1)
    ]
    table = to_markdown(summarise(results), "t")
    assert "all weights pruned (2 of 2 seeds)" in table and "1000.0x" not in table


def test_top_level_targets_expand_compress_and_method_rows_but_not_kd_rows():
    config = parse_experiment({**TINY, "targets": [0.9, 0.95], "rows": [
        {"label": "VS", "method": "compress"}, {"label": "KD alone", "method": "kd"},
        {"label": "Level", "method": "level", "config_list": [{"op_types": ["Linear"]}]}]})
    assert [(r.label, r.target) for r in config.rows] == [
        ("VS @ 0.9", 0.9), ("VS @ 0.95", 0.95), ("KD alone", None), ("Level @ 0.9", 0.9), ("Level @ 0.95", 0.95)]
    assert config.compress_settings(config.rows[0], 0, 1.0).target_sparsity == 0.9


def test_summary_notes_name_the_loss_of_the_dense_student():
    from vs_plugin.study.runner import _notes

    base = {"name": "n", "dataset": "digits", "teacher": "mlp:in-32-out", "student": "mlp:in-16-out", "seeds": [0],
            "rows": [{"label": "gm", "method": "gradual_magnitude", "config_list": [{"op_types": ["Linear"]}], "target": 0.9}]}
    with_kd = " ".join(_notes(parse_experiment({**base, "kd_weight": 1.0, "temperature": 2.0})))
    assert "CE + 1.0 KD (T = 2.0)" in with_kd and "CE alone" not in with_kd
    without = " ".join(_notes(parse_experiment({**base, "kd_weight": 0.0})))
    assert "dense student with CE alone (kd_weight 0)" in without and "epochs with CE alone (kd_weight 0)" in without
    assert "KD (T =" not in without
