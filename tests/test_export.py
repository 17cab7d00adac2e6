"""vs-plugin export: ONNX files of a run's students and teacher, checked with onnxruntime."""

import json

import numpy as np
import pytest
import torch

from vs_plugin import load_student
from vs_plugin.cli.main import main
from vs_plugin.errors import ConfigError
from vs_plugin.export import export_run, is_mlp, shrink


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    code = main(["compress", "--teacher", "mlp:in-64-32-out", "--student", "mlp:in-48-16-out", "--teacher-epochs", "1",
                 "--epochs", "1", "--batch-size", "256", "--out", str(out), "--quiet"])
    assert code == 0
    # Units die in long runs; here some are killed by hand in the saved student: all incoming
    # weights of hidden units 0-9 (their constant output is folded), all outgoing of unit 11.
    state = torch.load(out / "student.pt")
    state["1.weight"][:10] = 0
    state["3.weight"][:, 11] = 0
    torch.save(state, out / "student.pt")
    return out


def test_shrink_removes_dead_units_exactly():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    with torch.no_grad():
        model[1].weight[1].zero_()  # dead: constant relu(b) folded into the next bias
        model[3].weight[:, 2].zero_()  # dead: nobody reads it
    small = shrink(model)
    assert is_mlp(model) and small[1].out_features == 3
    x = torch.randn(7, 6)
    assert torch.allclose(small(x), model(x), atol=1e-6)


def test_export_cli_writes_checked_onnx_files(mlp_run, capsys):
    assert main(["export", str(mlp_run), "--format", "onnx", "--repeats", "2", "--batch-sizes", "1", "4"]) == 0
    printed = capsys.readouterr().out
    assert "student-shrunk" in printed and "export.json" in printed
    report = json.loads((mlp_run / "onnx" / "export.json").read_text())
    assert set(report["models"]) == {"student", "student-shrunk", "teacher"} and report["kind"] == "unstructured"
    for name, entry in report["models"].items():
        assert (mlp_run / "onnx" / entry["file"]).stat().st_size == entry["bytes"] > 0
        assert entry["check"]["max_abs_diff"] <= 1e-4 and entry["check"]["argmax_agree"] == 1.0
        assert set(entry["latency_ms"]) == {"1", "4"} and all(v > 0 for v in entry["latency_ms"].values())
    shrunk, dense = report["models"]["student-shrunk"], report["models"]["student"]
    assert dense["params"] - shrunk["params"] == 11 * (64 + 1 + 16) and shrunk["bytes"] < dense["bytes"]
    assert shrunk["check"]["vs_student"]["max_abs_diff"] <= 1e-4

    # Independently: onnxruntime on the exported file against the saved PyTorch student.
    import onnxruntime

    student = load_student(mlp_run)
    x = torch.randn(5, 1, 8, 8)
    for name in ("student.onnx", "student-shrunk.onnx"):
        ort = onnxruntime.InferenceSession(str(mlp_run / "onnx" / name), providers=["CPUExecutionProvider"])
        got = ort.run(None, {"input": x.numpy()})[0]
        assert np.allclose(got, student(x).detach().numpy(), rtol=1e-3, atol=1e-4)

    # A second export into the same place needs --overwrite; bad input is a one-line error.
    assert main(["export", str(mlp_run), "--repeats", "1", "--batch-sizes", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(mlp_run / "nothing"), "--repeats", "1"]) == 2
    with pytest.raises(ConfigError, match="unknown export format"):
        export_run(mlp_run, "tflite")


def test_python_export_without_teacher(mlp_run, tmp_path):
    report = export_run(mlp_run, out_dir=tmp_path / "x", repeats=1, batch_sizes=(1,), with_teacher=False)
    assert set(report["models"]) == {"student", "student-shrunk"} and report["teacher"] == "not asked for"
