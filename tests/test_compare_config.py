"""The compare config and the method registry: clear one-line errors, before anything is trained."""

import pytest
import yaml

from vs_plugin.cli.main import main
from vs_plugin.compare import compare_config_from_mapping, get_method, method_names, register_method, unregister_method
from vs_plugin.compare.config import load_compare_config
from vs_plugin.errors import ConfigError, UnknownNameError

NNI_METHODS = {"variational_student", "level", "l1", "l2", "fpgm", "taylor", "movement", "slim"}


def minimal(**changes):
    data = {"methods": [{"name": "level", "config_list": [{"op_types": ["Linear"]}]}]}
    data.update(changes)
    return data


def test_every_nni_method_is_registered_through_entry_points():
    assert NNI_METHODS <= set(method_names())
    for name in NNI_METHODS:
        method = get_method(name)
        assert callable(method.plan) and callable(method.run)


def test_unknown_method_is_an_error_listing_the_known_ones():
    with pytest.raises(UnknownNameError) as caught:
        get_method("lvel")
    message = str(caught.value)
    assert "'lvel'" in message
    for name in NNI_METHODS:
        assert name in message


def test_unknown_method_in_a_config_stops_the_cli_with_one_line(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(minimal(methods=[{"name": "magnitude", "config_list": [{"op_types": ["Linear"]}]}])))
    assert main(["compare", "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown compression method 'magnitude'" in err and "level" in err and "variational_student" in err
    assert not (tmp_path / "out").exists()


def test_registering_a_taken_name_is_loud():
    with pytest.raises(ConfigError, match="already provided"):
        register_method("level", lambda: get_method("level"))
    register_method("my-method", lambda: get_method("level"))
    try:
        with pytest.raises(ConfigError, match="already registered"):
            register_method("my-method", lambda: get_method("level"))
        assert "my-method" in method_names()
    finally:
        unregister_method("my-method")


BAD = {
    "unknown key": ({"epoch": 3}, "unknown compare setting"),
    "unknown method key": ({"methods": [{"name": "level", "config_lst": []}]}, "config_lst"),
    "negative epochs": ({"epochs": 0}, "epochs must be >= 1"),
    "bool epochs": ({"epochs": True}, "epochs must be an integer"),
    "target out of range": ({"targets": [0.5, 1.0]}, r"sparsities in \(0, 1\)"),
    "no methods": ({"methods": []}, "at least one method"),
    "device": ({"device": "tpu"}, "device must be one of"),
    "duplicate labels": ({"methods": [{"name": "level", "config_list": [{"op_types": ["Linear"]}]}] * 2}, "appear twice"),
    "lr": ({"lr": "fast"}, "lr must be a number"),
    "teacher lr schedule": ({"teacher_lr_schedule": "step"}, "teacher_lr_schedule must be one of constant, cosine"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_compare_configs(case):
    changes, message = BAD[case]
    with pytest.raises(ConfigError, match=message):
        compare_config_from_mapping(minimal(**changes))


def test_yaml_spelling_of_floats_and_relative_paths(tmp_path):
    path = tmp_path / "sub" / "c.yaml"
    path.parent.mkdir()
    path.write_text("lr: 1e-3\nteacher_checkpoint: ../teacher.pt\n" + yaml.safe_dump(minimal()))
    config = load_compare_config(path)
    assert config.lr == 0.001
    assert config.teacher_checkpoint == tmp_path / "sub" / ".." / "teacher.pt"


BAD_METHODS = {
    "baseline sets its sparsity": ({"name": "level", "config_list": [{"op_types": ["Linear"], "sparse_ratio": 0.5}]}, "comes from targets"),
    "baseline without config_list": ({"name": "l1"}, "needs a config_list"),
    "baseline option": ({"name": "level", "config_list": [{"op_types": ["Linear"]}], "options": {"training_steps": 3}}, "unknown option"),
    "nni schema": ({"name": "level", "config_list": [{"op_types": "Linear"}]}, "NNI's schema"),
    "vs option": ({"name": "variational_student", "options": {"temprature": 2}}, "temprature"),
    "vs warm-up": ({"name": "variational_student", "options": {"kl_warmup_epochs": -1}}, "kl_warmup_epochs"),
}


@pytest.mark.parametrize("case", list(BAD_METHODS))
def test_bad_method_entries_fail_when_planned(case):
    entry, message = BAD_METHODS[case]
    with pytest.raises(ConfigError, match=message):
        compare_config_from_mapping(minimal(methods=[entry])).to_study("c")


def test_plans_cover_every_target_and_the_threshold_run():
    # Top-level targets reach every entry without targets of its own, the Variational Student
    # included, unless its config_list sets the sparsity itself (here: the threshold run).
    config = compare_config_from_mapping(minimal(targets=[0.5, 0.9], methods=[
        {"name": "variational_student", "config_list": [{"op_types": ["Linear"], "sparse_threshold": 3.0}]},
        {"name": "variational_student", "label": "vs-ratio", "targets": [0.8]},
        {"name": "variational_student", "label": "vs-top", "config_list": [{"op_types": ["Linear"]}]},
        {"name": "variational_student", "label": "vs-bare"},
        {"name": "level", "config_list": [{"op_types": ["Linear"]}]},
    ]))
    assert [(row.label, row.target) for row in config.to_study("c", reference_rows=False).rows] == [
        ("variational_student", None), ("vs-ratio @ 0.8", 0.8), ("vs-top @ 0.5", 0.5), ("vs-top @ 0.9", 0.9),
        ("vs-bare @ 0.5", 0.5), ("vs-bare @ 0.9", 0.9), ("level @ 0.5", 0.5), ("level @ 0.9", 0.9),
    ]
    assert config.to_study("c").rows[0].label == "dense student"  # the shared starting student, as a reference row


def test_without_top_level_targets_the_variational_student_prunes_by_its_threshold():
    config = compare_config_from_mapping(minimal(methods=[
        {"name": "variational_student"},
        {"name": "level", "config_list": [{"op_types": ["Linear"]}]},
    ]))
    assert [(row.label, row.target) for row in config.to_study("c", reference_rows=False).rows] == [
        ("variational_student", None), ("level @ 0.9", 0.9), ("level @ 0.95", 0.95), ("level @ 0.98", 0.98),
    ]


def test_the_top_level_targets_reach_the_variational_students_config_list():
    from vs_plugin.integrations.nni.methods.variational import VariationalStudentMethod

    config = compare_config_from_mapping(minimal(targets=[0.7], methods=[{"name": "variational_student"}]))
    (row,) = config.to_study("c", reference_rows=False).rows
    assert row.target == 0.7
    config_list = VariationalStudentMethod()._config_list(config.methods[0], row.target)
    assert all(item["sparse_ratio"] == 0.7 for item in config_list)


@pytest.mark.parametrize("entry, message", [
    ({"name": "variational_student", "targets": [1.5]}, r"methods\[0\] \(variational_student\)\.targets must hold"),
    ({"name": "variational_student", "bogus": 1}, r"methods\[0\] \(variational_student\) has unknown key\(s\) bogus"),
    ({"name": "variational_student", "config_list": "x"}, r"methods\[0\] \(variational_student\)\.config_list must be"),
    ({"name": "variational_student", "options": "x"}, r"methods\[0\] \(variational_student\)\.options must be"),
])
def test_errors_in_a_method_entry_name_the_method(entry, message):
    with pytest.raises(ConfigError, match=message):
        compare_config_from_mapping(minimal(methods=[entry]))


def test_train_fraction_is_validated_and_applies_to_the_students_only(tmp_path):
    import torch

    from vs_plugin.compare.config import compare_config_from_mapping
    from vs_plugin.data import load_dataset
    from vs_plugin.models import InputSpec, build_model
    from vs_plugin.study.cells import SeedCells

    base = {"dataset": "digits", "teacher": "mlp:in-16-out", "student": "mlp:in-8-out", "teacher_epochs": 1,
            "dense_student_epochs": 1, "epochs": 1, "methods": [{"name": "level", "config_list": [{"op_types": ["Linear"]}]}]}
    for bad in (0, 1.5, "half"):
        with pytest.raises(ConfigError, match="train_fraction"):
            compare_config_from_mapping({**base, "train_fraction": bad})
    study = compare_config_from_mapping({**base, "train_fraction": 0.2, "device": "cpu"}).to_study("c")
    assert study.train_fractions == (0.2,) and study.teacher_train_fraction == 1.0
    assert study.teacher_lr_schedule == "constant"
    assert compare_config_from_mapping({**base, "teacher_lr_schedule": "cosine"}).to_study("c").teacher_lr_schedule == "cosine"
    teacher = tmp_path / "teacher.pt"
    torch.save(build_model("mlp:in-16-out", InputSpec(1, 8, 8, 10)).state_dict(), teacher)
    cells = SeedCells(study, 0, teacher, load_dataset("digits"))
    context = cells.context(study.rows[-1], 0.2)
    labels = load_dataset("digits").train.tensors[1]
    assert context.num_train_samples == sum(round(0.2 * int(n)) for n in torch.bincount(labels))
