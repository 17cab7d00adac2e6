"""Done-when test of issue 13: a timm teacher saved in timm's train.py checkpoint format, an
RGB image folder, `compress` (unstructured and --structured) and `export --format onnx`.

The fast variant (default run) uses 3 digit classes at 32 px and timm's test_resnet; the slow
one is docs/image-folder.md's example (all digits at 32 px, resnet10t).
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vs_plugin import load_student
from vs_plugin.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def example_module():
    spec = importlib.util.spec_from_file_location("timm_image_folder", ROOT / "examples" / "timm_image_folder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timm_eval_accuracy(arch: str, checkpoint: Path, folder: Path, size: int, classes: int) -> tuple[float, dict]:
    """The teacher's top-1 on folder/test as timm itself evaluates it: its checkpoint loader (EMA
    weights), resolve_data_config and the eval transform; and that data config."""
    import timm
    from timm.data import create_transform, resolve_data_config
    from torchvision.datasets import ImageFolder

    model = timm.create_model(arch, num_classes=classes)
    timm.models.load_checkpoint(model, str(checkpoint), use_ema=True)
    model.eval()
    config = resolve_data_config({"input_size": (3, size, size)}, model=model)
    dataset = ImageFolder(str(folder / "test"), transform=create_transform(**config))
    correct = 0
    with torch.no_grad():
        for images, labels in torch.utils.data.DataLoader(dataset, batch_size=64):
            correct += int((model(images).argmax(-1) == labels).sum())
    return correct / len(dataset), config


def as_lists(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def run_example(tmp_path: Path, arch: str, size: int, per_class, classes, teacher_epochs: int, epochs: int, repeats: str):
    example = example_module()
    folder = example.write_digits_folder(tmp_path / "digits", size=size, per_class=per_class, classes=classes)
    checkpoint = example.train_teacher(folder, arch, tmp_path / "teacher", image_size=size, epochs=teacher_epochs, batch_size=32)
    saved = torch.load(checkpoint, weights_only=False)
    assert {"state_dict", "state_dict_ema", "arch", "args", "epoch"} <= set(saved)  # timm's train.py format
    common = ["--teacher", f"timm:{arch}", "--student", "same", "--teacher-checkpoint", str(checkpoint), "--dataset", f"folder:{folder}",
              "--image-size", str(size), "--epochs", str(epochs), "--batch-size", "32", "--hflip", "0",
              "--crop-scale-min", "0.5", "--quiet"]
    runs = {"unstructured": tmp_path / "unstructured", "structured": tmp_path / "structured"}
    assert main(["compress", *common, "--out", str(runs["unstructured"])]) == 0
    assert main(["compress", "--structured", *common, "--latency-repeats", "1", "--latency-batch-sizes", "1",
                 "--out", str(runs["structured"])]) == 0
    for run in runs.values():
        assert main(["export", str(run), "--format", "onnx", "--repeats", repeats, "--batch-sizes", "1", "8"]) == 0

    num_classes = len(classes) if classes else 10
    accuracy, config = timm_eval_accuracy(arch, checkpoint, folder, size, num_classes)
    test_images = torch.stack([image for image, _ in _eval_images(folder, config)[:8]])
    for kind, run in runs.items():
        report = json.loads((run / "report.json").read_text())
        assert report["teacher"]["accuracy"] == accuracy, kind
        pipeline = report["dataset"]["image_pipeline"]
        assert pipeline["data_config"] == as_lists(config) and pipeline["data_config_source"].startswith("teacher pretrained_cfg")
        assert report["teacher"]["weights_from"]["ema"] is True
        exported = json.loads((run / "onnx" / "export.json").read_text())
        assert set(exported["models"]) == {"student", "teacher"} and exported["kind"] == kind
        assert all(m["check"]["max_abs_diff"] <= 1e-4 for m in exported["models"].values())
        # onnxruntime against the saved PyTorch student on real test images.
        import onnxruntime

        if kind == "structured":
            from vs_plugin.integrations.torch_pruning import load_pruned

            student = load_pruned(run)
        else:
            student = load_student(run)
        session = onnxruntime.InferenceSession(str(run / "onnx" / "student.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": test_images.numpy()})[0]
        with torch.no_grad():
            expected = student(test_images).numpy()
        assert np.allclose(got, expected, rtol=1e-3, atol=1e-4)
    unstructured = json.loads((runs["unstructured"] / "report.json").read_text())
    assert unstructured["student"]["teacher_outputs"] == "computed every step"  # augmented data: no cache
    return runs


def _eval_images(folder: Path, config: dict):
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(folder / "test"), transform=create_transform(**config))
    return [dataset[i] for i in range(len(dataset))]


def test_timm_teacher_on_an_image_folder_compressed_and_exported(tmp_path):
    run_example(tmp_path, "test_resnet", 32, per_class=4, classes=(0, 1, 2), teacher_epochs=1, epochs=1, repeats="1")


@pytest.mark.slow
def test_worked_example_of_the_docs(tmp_path):
    run_example(tmp_path, "resnet10t", 32, per_class=None, classes=None, teacher_epochs=5, epochs=3, repeats="5")
