"""Checkpoint and spec files read back: one-line errors that say what is wrong, nothing executed,
no file outside the run folder followed, no absurd allocation because a spec says so."""

import json
import os
import pickle

import pytest
import torch

from vs_plugin import load_student
from vs_plugin.errors import CheckpointError
from vs_plugin.models import read_state_dict
from vs_plugin.models.builtin import MLP


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_text_file_is_named_as_not_a_checkpoint(tmp_path):
    path = tmp_path / "text.pt"
    path.write_text("101 dalmatians\n")
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert "not a PyTorch checkpoint" in message and str(path) in message
    assert ": 101" not in message


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        read_state_dict(tmp_path)


def test_a_pickle_with_code_is_refused_without_pytorch_advice(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "x": Payload()}, path)
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert "never runs code" in message and "\x1b[" not in message
    assert "weights_only=False" not in message and "\n" not in message


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError):
        read_state_dict(path)


def write_student_run(folder, weights_name="student.pt", widths="64-32-10", input_shape=(1, 8, 8)):
    folder.mkdir(parents=True, exist_ok=True)
    model = MLP([64, 32, 10])
    torch.save(model.state_dict(), folder / "student.pt")
    spec = {"format": "vs-plugin-student/1", "model": f"mlp:{widths}", "input": list(input_shape), "num_classes": 10,
            "weights": weights_name}
    (folder / "student.json").write_text(json.dumps(spec))
    return folder


def test_load_student_reads_its_own_run(tmp_path):
    model = load_student(write_student_run(tmp_path / "run"))
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_load_student_refuses_weights_outside_the_run_folder(tmp_path):
    outside = tmp_path / "elsewhere.pt"
    torch.save(MLP([64, 32, 10]).state_dict(), outside)
    run = write_student_run(tmp_path / "run", weights_name="../elsewhere.pt")
    with pytest.raises(CheckpointError, match="outside"):
        load_student(run)
    run = write_student_run(tmp_path / "run2", weights_name=str(outside))
    with pytest.raises(CheckpointError, match="outside"):
        load_student(run)


def test_load_student_refuses_an_absurd_model_size(tmp_path):
    run = write_student_run(tmp_path / "run", widths="64-4000000-4000000-10")  # 16e12 parameters
    with pytest.raises(CheckpointError, match="parameters"):
        load_student(run)


def write_pruned_spec(folder, model_name, weights_name="pruned.pt"):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(MLP([64, 32, 10]).state_dict(), folder / "pruned.pt")
    spec = {"format": "vs-plugin-pruned/1", "model": model_name, "input": [1, 8, 8], "num_classes": 10,
            "weights": weights_name, "plan": [], "attention": {}, "widths": {}}
    (folder / "pruned.json").write_text(json.dumps(spec))
    return folder


def test_load_pruned_refuses_weights_outside_and_absurd_sizes(tmp_path):
    pytest.importorskip("torch_pruning")
    from vs_plugin.integrations.torch_pruning import load_pruned

    torch.save(MLP([64, 32, 10]).state_dict(), tmp_path / "elsewhere.pt")
    with pytest.raises(CheckpointError, match="outside"):
        load_pruned(write_pruned_spec(tmp_path / "a", "mlp:64-32-10", "../elsewhere.pt"))
    with pytest.raises(CheckpointError, match="memory"):
        load_pruned(write_pruned_spec(tmp_path / "b", "mlp:64-4000000-4000000-10"))
    assert load_pruned(write_pruned_spec(tmp_path / "c", "mlp:64-32-10"))(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
