"""NNI hyper-parameter search on localhost: two short TPE trials, and the manager stopped even on failure."""

import json
import shlex
import socket
from pathlib import Path

import pytest
import yaml

from vs_plugin.cli.main import main
from vs_plugin.compare.config import compare_config_from_mapping, load_compare_config
from vs_plugin.errors import ConfigError
from vs_plugin.integrations.nni.experiment import load_experiment_config
from vs_plugin.integrations.nni.trial import apply_parameters, pick_entry

COMPARE = {
    "dataset": "digits",
    "teacher": "mlp:in-64-out",
    "student": "mlp:in-32-out",
    "teacher_epochs": 1,
    "dense_student_epochs": 0,
    "epochs": 1,
    "batch_size": 128,
    "device": "cpu",
    "methods": [{"name": "variational_student", "config_list": [{"op_types": ["Linear"]}]}],
}
SEARCH_SPACE = {
    "temperature": {"_type": "choice", "_value": [2.0, 4.0]},
    "threshold": {"_type": "uniform", "_value": [2.0, 4.0]},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("localhost", port)) == 0


def experiment(tmp_path, trial_command, max_trials=5):
    (tmp_path / "compare.yaml").write_text(yaml.safe_dump(COMPARE))
    (tmp_path / "space.json").write_text(json.dumps(SEARCH_SPACE))
    config = {
        "experimentName": "vs-plugin-test",
        "searchSpaceFile": "space.json",
        "trialCommand": trial_command,
        "trialCodeDirectory": ".",
        "trialConcurrency": 1,
        "maxTrialNumber": max_trials,
        "tuner": {"name": "TPE", "classArgs": {"optimize_mode": "maximize"}},
        "trainingService": {"platform": "local"},
    }
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_two_tpe_trials_report_accuracy_and_compression(tmp_path, capsys):
    path = experiment(tmp_path, "python -m vs_plugin.integrations.nni.trial --config compare.yaml --min-compression 2")
    port = free_port()
    args = ["tune", "--config", str(path), "--port", str(port), "--max-trials", "2", "--work-dir", str(tmp_path / "nni"), "--timeout", "240"]
    assert main(args) == 0
    out = capsys.readouterr().out
    trials = [line for line in out.splitlines() if line.startswith("trial ")]
    assert len(trials) == 2
    for line in trials:
        assert "accuracy" in line and "compression" in line and "threshold" in line and "temperature" in line
    assert "best trial" in out
    assert not port_in_use(port)  # NNI's manager was stopped


def test_failing_trials_are_an_error_and_the_manager_still_stops(tmp_path, capsys):
    path = experiment(tmp_path, "python -c 'import sys; sys.exit(3)'", max_trials=1)
    port = free_port()
    args = ["tune", "--config", str(path), "--port", str(port), "--work-dir", str(tmp_path / "nni"), "--timeout", "120"]
    assert main(args) == 2
    assert "no trial reported a result" in capsys.readouterr().err
    assert not port_in_use(port)


def test_trial_parameters_go_to_the_config_list_and_options():
    entry = pick_entry(compare_config_from_mapping(COMPARE), None)
    tuned = apply_parameters(entry, {"threshold": 2.5, "temperature": 8.0, "kl_warmup_epochs": 0})
    assert tuned.config_list[0]["sparse_threshold"] == 2.5
    assert tuned.options == {"temperature": 8.0, "kl_warmup_epochs": 0}
    with pytest.raises(ConfigError, match="learning_rate"):
        apply_parameters(entry, {"learning_rate": 0.1})


def test_shipped_tune_config_matches_its_compare_config_and_search_space():
    configs = Path(__file__).resolve().parents[1] / "configs"
    experiment_config = load_experiment_config(configs / "tune-digits.yml")
    experiment_config.canonical_copy()  # NNI's own validation: search space file, trial folder
    words = shlex.split(experiment_config.trial_command)
    compare = load_compare_config(configs / words[words.index("--config") + 1])
    entry = pick_entry(compare, words[words.index("--method") + 1])
    space = json.loads((configs / "tune-digits-search-space.json").read_text())
    tuned = apply_parameters(entry, {name: spec["_value"][0] for name, spec in space.items()})
    assert tuned.config_list[0]["sparse_threshold"] == space["threshold"]["_value"][0]
