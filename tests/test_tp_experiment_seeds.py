"""The structured experiment over seeds: one folder per seed, finished seeds read back, mean ± std."""

import json
import shutil

import pytest
import yaml

from vs_plugin.errors import ConfigError
from vs_plugin.integrations.torch_pruning.experiment import main as experiment_main
from vs_plugin.integrations.torch_pruning.experiment_seeds import seeds_table, summarise_seeds

TINY = {
    "teacher": "vgg-like:0.125", "dataset": "digits", "targets": [0.5], "baselines": ["tp-magnitude"],
    "settings": {"teacher_epochs": 1, "epochs": 1, "batch_size": 128, "progress": False},
    "structured": {"latency_repeats": 2, "latency_batch_sizes": [1]},
}


def _results(seed: int, accuracies: list, methods=("teacher (dense)", "vs-structured")) -> dict:
    rows = []
    for method, accuracy in zip(methods, accuracies):
        target = None if method.startswith("teacher") else 0.5
        rows.append({"method": method, "target_macs_ratio": target, "accuracy": accuracy,
                     "pruned_accuracy": None if target is None else accuracy - 0.1, "params": 100, "macs": 50,
                     "macs_ratio_vs_teacher": 1.0 if target is None else 0.5,
                     "speedup": {"1": 1.0 if target is None else 1.5 + seed}, "latency_ms": {"1": 2.0}})
    return {"teacher": "t", "dataset": "d", "test_split": "test", "input_shape": [1, 8, 8],
            "epochs": {"student": 1, "finetune": 0, "baselines": 1}, "settings": {"seed": seed}, "rows": rows, "wall_time_s": 2.0}


def test_summary_is_mean_and_sample_std_over_seeds():
    summary = summarise_seeds([_results(0, [0.90, 0.80]), _results(1, [0.92, 0.84])])
    student = summary["rows"][1]
    assert student["seeds"] == 2 and summary["seeds"] == [0, 1]
    assert student["accuracy"] == pytest.approx(0.82) and student["accuracy_std"] == pytest.approx(0.02 * 2 ** 0.5)
    assert student["speedup"]["1"] == pytest.approx(2.0) and student["speedup_std"]["1"] == pytest.approx(0.5 ** 0.5)
    assert summary["rows"][0]["pruned_accuracy"] is None and summary["wall_time_s"] == 4.0
    table = seeds_table(summary)
    assert "| vs-structured | 50% | 50.0% | 0.000 ± 0.000 | 82.00 ± 2.83 | 72.00 ± 2.83 | 2.00x ± 0.71 |" in table
    single = seeds_table(summarise_seeds([_results(0, [0.90, 0.80])]))
    assert "| vs-structured | 50% | 50.0% | 0.000 | 80.00 | 70.00 | 1.50x |" in single


def test_seeds_that_ran_different_rows_are_refused():
    with pytest.raises(ConfigError, match="ran different experiments"):
        summarise_seeds([_results(0, [0.9, 0.8]), _results(1, [0.9], methods=("teacher (dense)",))])
    with pytest.raises(ConfigError, match="no seed results"):
        summarise_seeds([])


def test_seeds_run_into_their_own_folders_and_finished_ones_are_read_back(tmp_path, capsys):
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "seeds"
    assert experiment_main(["--config", str(config), "--out", str(out), "--quiet", "--seeds", "0,1"]) == 0
    per_seed = [json.loads((out / f"seed-{s}" / "results.json").read_text()) for s in (0, 1)]
    assert [r["settings"]["seed"] for r in per_seed] == [0, 1]
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1] and [row["method"] for row in summary["rows"]] == ["teacher (dense)", "vs-structured", "tp-magnitude"]
    for index, row in enumerate(summary["rows"]):
        assert row["seeds"] == 2
        assert row["accuracy"] == pytest.approx(sum(r["rows"][index]["accuracy"] for r in per_seed) / 2)
    assert (out / "seeds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "seeds 0, 1: mean ± sample standard deviation" in (out / "seeds.md").read_text()

    # Finished seeds are read back, not rerun: their results.json is untouched.
    stamp = (out / "seed-0" / "results.json").stat().st_mtime_ns
    capsys.readouterr()
    assert experiment_main(["--config", str(config), "--out", str(out), "--seeds", "1,0"]) == 0
    assert (out / "seed-0" / "results.json").stat().st_mtime_ns == stamp
    assert "seed 0: read back" in capsys.readouterr().out
    assert json.loads((out / "seeds.json").read_text())["seeds"] == [1, 0]

    # A folder holding another seed's results is an error, not silently averaged in.
    shutil.copytree(out / "seed-0", out / "seed-7")
    assert experiment_main(["--config", str(config), "--out", str(out), "--quiet", "--seeds", "7"]) == 2
    err = capsys.readouterr().err
    assert "seed 0, not 'vgg-like:0.125', seed 7" in err and "--overwrite" in err
    with pytest.raises(SystemExit) as exit_info:
        experiment_main(["--config", str(config), "--out", str(out), "--seeds", "0,0"])
    assert exit_info.value.code == 2 and "lists a seed twice" in capsys.readouterr().err
