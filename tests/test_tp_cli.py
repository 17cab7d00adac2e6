"""`vs-plugin compress --structured` end to end on the embedded digits, and the one-command
comparison with torch-pruning baselines lives in tests/test_study_structured.py."""

import json

import pytest
import yaml

from vs_plugin.cli.main import main
from vs_plugin.data import load_dataset, make_loader
from vs_plugin.integrations.torch_pruning import load_pruned
from vs_plugin.metrics import evaluate_accuracy

SMALL = ["--teacher", "vgg-like:0.125", "--dataset", "digits", "--teacher-epochs", "1", "--epochs", "2", "--batch-size", "128",
         "--kl-warmup-epochs", "1", "--latency-repeats", "2", "--latency-batch-sizes", "1", "4", "--quiet"]


@pytest.fixture(scope="module")
def structured_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("structured") / "run"
    code = main(["compress", "--structured", *SMALL, "--target-macs", "0.5", "--prune-steps", "2", "--finetune-epochs", "1", "--out", str(out)])
    assert code == 0
    return out


def test_structured_run_writes_a_smaller_model_and_measures_it(structured_run, capsys):
    # checkpoint.pt: structured runs are checkpointed and resumable like every run (issue 15)
    assert {p.name for p in structured_run.iterdir()} == {"report.json", "pruned.json", "pruned.pt", "teacher.pt", "checkpoint.pt"}
    report = json.loads((structured_run / "report.json").read_text())
    section = report["structured"]
    assert section["prune_by"] == "macs" and section["target_macs_ratio"] == 0.5
    assert section["student"]["macs"] <= 0.5 * section["dense_student"]["macs"]
    assert section["student"]["params"] < section["teacher"]["params"]
    assert section["macs_ratio_vs_teacher"] == pytest.approx(section["student"]["macs"] / section["teacher"]["macs"])
    assert [s["epoch"] for s in section["steps"]] == [1, 2]
    for batch in ("1", "4"):
        timing = section["latency"]["batch_sizes"][batch]
        assert timing["teacher"] > 0 and timing["student"] > 0
        assert timing["speedup"] == pytest.approx(timing["teacher"] / timing["student"])
    assert section["latency"]["repeats"] == 2
    assert report["config"]["granularity"] == "channel" and report["config"]["structured"]["prune_steps"] == 2
    assert len(report["history"]["student"]) == 2 and len(report["history"]["finetune"]) == 1
    # The saved model is the measured one.
    model = load_pruned(structured_run)
    bundle = load_dataset("digits")
    accuracy = evaluate_accuracy(model, make_loader(bundle.test, 256, shuffle=False, seed=0))
    assert accuracy == pytest.approx(report["student"]["accuracy"])
    assert report["student"]["params"] == sum(p.numel() for p in model.parameters())


def test_threshold_pruning_from_a_config_file_equals_the_masked_student(tmp_path):
    config = tmp_path / "structured.yaml"
    config.write_text(yaml.safe_dump({"structured": {"prune_by": "threshold"}, "threshold": -5.99, "epochs": 1}))
    out = tmp_path / "threshold"
    assert main(["compress", "--config", str(config), *SMALL, "--epochs", "1", "--out", str(out)]) == 0
    section = json.loads((out / "report.json").read_text())["structured"]
    assert section["prune_by"] == "threshold" and section["steps"][0]["channels_removed"] > 0
    assert section["reference_accuracy"] == pytest.approx(section["pruned_accuracy"])


def test_structured_options_need_structured(tmp_path, capsys):
    assert main(["compress", *SMALL, "--target-macs", "0.5", "--out", str(tmp_path / "x")]) == 2
    assert "applies only with --structured" in capsys.readouterr().err
    # --resume is supported with --structured now (issue 15); with nothing to resume it is still an error
    assert main(["compress", "--structured", *SMALL, "--resume", "--out", str(tmp_path / "y")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    assert main(["compress", "--structured", *SMALL, "--prune-steps", "5", "--out", str(tmp_path / "z")]) == 2
    assert "prune_steps" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()
