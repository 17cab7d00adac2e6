"""``eval_every``: the test split is measured every N epochs and after the last one."""

import json

import pytest

from vs_plugin.cli.main import main
from vs_plugin.errors import ConfigError
from vs_plugin.pipeline.phases import evaluate_after
from vs_plugin.pipeline.settings import CompressSettings

SMALL = ["--teacher", "mlp:in-32-out", "--student", "mlp:in-16-out", "--dataset", "digits", "--quiet"]


def test_evaluate_after():
    assert [evaluate_after(e, 7, 3) for e in range(7)] == [False, False, True, False, False, True, True]
    assert all(evaluate_after(e, 4, 1) for e in range(4))


def test_history_has_test_accuracy_only_on_evaluated_epochs(tmp_path):
    out = tmp_path / "run"
    assert main(["compress", *SMALL, "--teacher-epochs", "3", "--epochs", "3", "--eval-every", "2", "--out", str(out)]) == 0
    history = json.loads((out / "report.json").read_text())["history"]
    for phase in ("teacher", "student"):
        assert ["test_accuracy" in record for record in history[phase]] == [False, True, True], phase
    assert ["sparsity" in record for record in history["student"]] == [False, True, True]


def test_eval_every_must_be_positive(capsys):
    with pytest.raises(ConfigError, match="eval_every must be >= 1"):
        CompressSettings(eval_every=0)
    assert main(["compress", *SMALL, "--eval-every", "0", "--out", "unused"]) != 0
    assert "eval_every" in capsys.readouterr().err
