"""timm's input pipeline: data config from the teacher's pretrained_cfg, --image-size override,
augmentation on/off/changed, image folders and resized in-memory data, the teacher cache."""

import numpy as np
import pytest
import torch

from vs_plugin.data import load_dataset
from vs_plugin.data.transforms import AugmentSettings, TransformedImages, build_pipeline
from vs_plugin.errors import ConfigError
from vs_plugin.models.teacher import TeacherSource, teacher_pretrained_cfg
from vs_plugin.pipeline.inputs import build_named_inputs
from vs_plugin.pipeline.settings import CompressSettings


def write_folder(root, size=(20, 24), per_class=3):
    from PIL import Image

    rng = np.random.RandomState(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            (root / split / label).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.randint(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / label / f"{i}.png")
    return root


def test_data_config_comes_from_the_teachers_pretrained_cfg():
    from timm.data import resolve_data_config

    config = teacher_pretrained_cfg("timm:resnet10t", TeacherSource())
    pipeline = build_pipeline(config, None)
    assert pipeline.data_config == resolve_data_config({}, pretrained_cfg=config)
    assert pipeline.data_config["input_size"] == (3, 176, 176) and pipeline.data_config["interpolation"] == "bicubic"
    assert pipeline.source == "teacher pretrained_cfg"
    small = build_pipeline(config, 48)
    assert small.size == (48, 48) and small.data_config["mean"] == pipeline.data_config["mean"]
    assert "--image-size 48" in small.source
    # torchvision teachers: the eval transform of their DEFAULT weights; built-in models: timm defaults at 32 px.
    torchvision_config = teacher_pretrained_cfg("torchvision:resnet18", TeacherSource())
    assert torchvision_config["input_size"] == (3, 224, 224) and torchvision_config["crop_pct"] == 224 / 256
    assert teacher_pretrained_cfg("mlp:in-10-out", TeacherSource()) is None
    assert build_pipeline(None, None).size == (32, 32)


def test_augmentation_is_timms_and_can_be_changed_or_turned_off():
    names = lambda transform: [type(t).__name__ for t in transform.transforms]  # noqa: E731
    default = build_pipeline(None, 32)
    assert names(default.train)[:3] == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "ColorJitter"]
    assert names(default.eval) == ["Resize", "CenterCrop", "MaybeToTensor", "Normalize"]
    changed = build_pipeline(None, 32, AugmentSettings(hflip=0.0, crop_scale_min=0.5, color_jitter=0.0, auto_augment="rand-m9-mstd0.5", random_erasing=0.25))
    described = changed.describe()
    assert "RandomHorizontalFlip" not in " ".join(described["train_transform"])
    assert "scale=(0.5, 1.0)" in described["train_transform"][0] and "RandAugment" in " ".join(described["train_transform"])
    assert "RandomErasing" in " ".join(described["train_transform"])
    off = build_pipeline(None, 32, AugmentSettings(mode="none"))
    assert off.train is off.eval and not off.augmented
    with pytest.raises(ConfigError, match="augment must be one of timm, none"):
        CompressSettings(augment="heavy")
    with pytest.raises(ConfigError, match="hflip must lie in"):
        CompressSettings(hflip=2.0)


def test_image_folder_through_the_pipeline(tmp_path):
    root = write_folder(tmp_path)
    pipeline = build_pipeline({"mean": (0.1, 0.2, 0.3), "std": (0.5, 0.5, 0.5)}, 16, AugmentSettings(mode="none"))
    bundle = load_dataset(f"folder:{root}", pipeline=pipeline)
    assert bundle.spec.height == 16 and bundle.spec.num_classes == 2 and bundle.pipeline is pipeline
    image, _ = bundle.test[0]
    assert image.shape == (3, 16, 16)
    assert torch.equal(bundle.test[0][0], bundle.test[0][0])  # eval transform: deterministic
    from PIL import Image

    expected = pipeline.eval(Image.open(bundle.test.samples[0][0]).convert("RGB"))
    assert torch.equal(image, expected)


def test_resized_in_memory_data_goes_through_timm_for_a_timm_teacher():
    settings = CompressSettings(augment="none")
    inputs = build_named_inputs("timm:test_resnet", None, "digits", settings=settings, source=TeacherSource(), image_size=24)
    bundle = inputs.bundle
    assert isinstance(bundle.train, TransformedImages) and bundle.spec.channels == 3 and bundle.spec.height == 24
    image, label = bundle.test[0]
    assert image.shape == (3, 24, 24) and label == int(bundle.test.targets[0])
    assert inputs.train_teacher and inputs.rerun["image_size"] == 24
    assert bundle.pipeline.data_config["mean"] == (0.5, 0.5, 0.5)  # test_resnet's pretrained_cfg
    # Built-in teachers keep the in-memory bilinear resize (and the teacher cache).
    plain = build_named_inputs("mlp:in-100-out", None, "digits", settings=settings, source=TeacherSource(), image_size=12)
    assert plain.bundle.pipeline is None and plain.bundle.train.tensors[0].shape[1:] == (1, 12, 12)


def test_report_says_how_the_teacher_outputs_were_computed(tmp_path):
    from vs_plugin.cli.main import main
    import json

    out = tmp_path / "run"
    assert main(["compress", "--teacher", "mlp:in-16-out", "--student", "mlp:in-8-out", "--teacher-epochs", "1", "--epochs", "1",
                 "--batch-size", "512", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["student"]["teacher_outputs"] == "cached once per training sample"
    assert "image_pipeline" not in report["dataset"]


def test_gpu_code_paths_that_can_be_checked_on_the_cpu(tmp_path):
    """fp16 needs CUDA (clear error); the loop's gradient-scaler path trains; channels_last is CUDA-only."""
    from vs_plugin.cli.main import main
    from vs_plugin.pipeline.phases import to_device
    from vs_plugin.training.loop import train_one_epoch
    from vs_plugin.training.steps import ClassifierStep

    assert main(["compress", "--amp", "fp16", "--device", "cpu", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    before = model[1].weight.detach().clone()
    batches = [(torch.randn(8, 1, 2, 2), torch.randint(0, 2, (8,)))] * 3
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    record = train_one_epoch(model, optimizer, batches, ClassifierStep(model, torch.device("cpu")), epoch=0,
                             first_global_step=0, phase="t", progress=False, total_epochs=1, scaler=scaler)
    assert record.terms["loss"] > 0 and not torch.equal(before, model[1].weight) and scaler.get_scale() == 1024.0
    conv = torch.nn.Conv2d(3, 4, 3)
    assert to_device(conv, torch.device("cpu"), channels_last=True).weight.is_contiguous()
