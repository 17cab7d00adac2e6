"""``vs-plugin experiment`` reuses a finished teacher or row only under the settings that produced it."""

import json

import pytest
import yaml

from vs_plugin.cli.main import main
from vs_plugin.errors import ConfigError
from vs_plugin.folder_lock import FolderLock

SMALL = {
    "name": "keys",
    "dataset": "digits",
    "teacher": "mlp:in-64-out",
    "teacher_epochs": 1,
    "seeds": [0],
    "epochs": 1,
    "batch_size": 128,
    "dense_student_epochs": 0,
    "student": "mlp:in-32-out",
    "rows": [{"label": "VS", "method": "compress"}, {"label": "KD alone", "method": "kd"}],
}


def run(folder, config, *extra):
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return main(["experiment", "--config", str(path), "--out", str(folder / "out"), "--quiet", *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    assert run(folder, SMALL) == 0
    return folder


def snapshot(out):
    return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "change, named",
    [
        ({"teacher": "mlp:in-128-out"}, "teacher"),
        ({"teacher_epochs": 2}, "teacher_epochs"),
        ({"teacher_lr_schedule": "cosine"}, "teacher_lr_schedule"),
        ({"epochs": 2}, "epochs"),
        ({"settings": {"kd_weight": 0.5}}, "kd_weight"),
    ],
    ids=["teacher", "teacher-epochs", "teacher-lr-schedule", "budget", "row-settings"],
)
def test_changed_settings_are_refused_not_reported_under_the_new_config(finished, change, named, capsys):
    out = finished / "out"
    before = snapshot(out)
    assert run(finished, {**SMALL, **change}) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and named in err and "--overwrite" in err
    assert snapshot(out) == before  # nothing rewritten, no summary under the new settings


def test_same_settings_reuse_and_overwrite_recomputes(finished, tmp_path):
    out = finished / "out"
    row = out / "rows" / "fraction-1" / "seed-0" / "vs.json"
    before = row.stat().st_mtime_ns
    assert run(finished, SMALL) == 0
    assert row.stat().st_mtime_ns == before
    changed = {**SMALL, "epochs": 2}
    copy = tmp_path / "copy"
    (copy / "out").mkdir(parents=True)
    for path, data in snapshot(out).items():
        (copy / "out" / path).parent.mkdir(parents=True, exist_ok=True)
        (copy / "out" / path).write_bytes(data)
    assert run(copy, changed, "--overwrite") == 0
    assert json.loads((copy / "out" / "rows" / "fraction-1" / "seed-0" / "vs.json").read_text())["epochs"] == 2


def test_results_without_a_settings_record_are_not_trusted(finished, tmp_path, capsys):
    out = tmp_path / "old" / "out"
    out.mkdir(parents=True)
    row = out / "rows" / "fraction-1" / "seed-0" / "vs.json"
    row.parent.mkdir(parents=True)
    data = json.loads((finished / "out" / "rows" / "fraction-1" / "seed-0" / "vs.json").read_text())
    data.pop("inputs", None)
    row.write_text(json.dumps(data))
    assert run(tmp_path / "old", SMALL) == 2
    assert "does not record the settings" in capsys.readouterr().err


def test_two_experiments_on_one_folder(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    lock = FolderLock(tmp_path / "out")
    try:
        assert run(tmp_path, SMALL) == 2
        assert "another vs-plugin run" in capsys.readouterr().err
    finally:
        lock.release()


def test_tuning_trials_share_one_teacher_only_under_the_same_settings(tmp_path):
    """NNI trials share the teacher trained in the experiment's folder (``shared_teacher``); a trial
    whose teacher settings differ is refused, never served the other teacher."""
    from vs_plugin.compare.config import compare_config_from_mapping
    from vs_plugin.study.runner import shared_teacher

    base = {"dataset": "digits", "teacher": "mlp:in-16-out", "student": "mlp:in-8-out", "teacher_epochs": 1,
            "dense_student_epochs": 0, "epochs": 1, "device": "cpu", "methods": [{"name": "level", "config_list": [{"op_types": ["Linear"]}]}]}
    study = compare_config_from_mapping(base).to_study("trial")
    first = shared_teacher(study, tmp_path)
    stamp = first.stat().st_mtime_ns
    assert shared_teacher(study, tmp_path) == first and first.stat().st_mtime_ns == stamp  # trained once
    other = compare_config_from_mapping({**base, "teacher_epochs": 2}).to_study("trial")
    with pytest.raises(ConfigError, match="computed with other settings"):
        shared_teacher(other, tmp_path)
