"""Teachers as timm users have them: train.py checkpoints (EMA preferred), safetensors, timm/HF
model folders, --pretrained (timm's loader with its local-file override; offline: a fast one-line
error), head class-count mismatches and --reset-head."""

import argparse
import time

import pytest
import torch

from vs_plugin.cli.main import main
from vs_plugin.errors import CheckpointError, ConfigError, ModelError
from vs_plugin.models import InputSpec, build_model
from vs_plugin.models import pretrained as hub
from vs_plugin.models.teacher import TeacherSource, load_teacher, teacher_pretrained_cfg

SPEC = InputSpec(3, 32, 32, 4)
NAME = "timm:test_resnet"


def _equal(model, state) -> bool:
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items())


def _perturbed(model) -> dict:
    return {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}


def test_timm_train_checkpoint_prefers_ema_and_says_so(tmp_path):
    plain = build_model(NAME, SPEC).state_dict()
    ema = _perturbed(build_model(NAME, SPEC))
    path = tmp_path / "last.pth.tar"
    args = argparse.Namespace(model="test_resnet", lr=0.1)  # train.py stores its args like this
    torch.save({"epoch": 3, "arch": "test_resnet", "args": args, "version": 2,
                "state_dict": {f"module.{k}": v for k, v in plain.items()},
                "state_dict_ema": {f"module.{k}": v for k, v in ema.items()}}, path)
    teacher, info = load_teacher(NAME, SPEC, TeacherSource(path))
    assert _equal(teacher, ema) and not _equal(teacher, plain)
    assert info["ema"] is True and info["state_dict_key"] == "state_dict_ema" and info["arch"] == "test_resnet"
    assert info["format"] == "training checkpoint" and info["trained_here"] is False
    torch.save({"state_dict": plain, "epoch": 1}, path)  # no EMA: the plain weights
    teacher, info = load_teacher(NAME, SPEC, TeacherSource(path))
    assert _equal(teacher, plain) and info["ema"] is False


def test_safetensors_and_plain_state_dict(tmp_path):
    from safetensors.torch import save_file

    state = _perturbed(build_model(NAME, SPEC))
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "t.safetensors")
    torch.save(state, tmp_path / "t.pt")
    for name in ("t.safetensors", "t.pt"):
        teacher, info = load_teacher(NAME, SPEC, TeacherSource(tmp_path / name))
        assert _equal(teacher, state) and info["format"] in ("safetensors", "state_dict")


def test_timm_model_folder_loads_through_timm_with_its_pretrained_cfg(tmp_path):
    import timm
    from timm.models import save_for_hf

    model = timm.create_model("test_resnet", num_classes=4)
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": (0.1, 0.2, 0.3), "input_size": (3, 48, 48)}
    with torch.no_grad():
        model.fc.bias.fill_(0.25)
    save_for_hf(model, tmp_path / "hub", safe_serialization=True)
    assert (tmp_path / "hub" / "config.json").is_file() and (tmp_path / "hub" / "model.safetensors").is_file()
    source = TeacherSource(tmp_path / "hub")
    config = teacher_pretrained_cfg(NAME, source)
    assert tuple(config["mean"]) == (0.1, 0.2, 0.3) and tuple(config["input_size"]) == (3, 48, 48)
    teacher, info = load_teacher(NAME, SPEC, source)
    assert _equal(teacher, model.state_dict()) and info["source"] == "timm/Hugging Face model folder"
    with pytest.raises(ModelError, match="holds timm:test_resnet"):
        load_teacher("timm:resnet10t", SPEC, source)
    with pytest.raises(ModelError, match="4-class head but the data has 7 classes; pass --reset-head"):
        load_teacher(NAME, InputSpec(3, 32, 32, 7), source)
    teacher, info = load_teacher(NAME, InputSpec(3, 32, 32, 7), TeacherSource(tmp_path / "hub", reset_head=True))
    assert teacher.fc.out_features == 7 and info["head_reset"] and info["trained_here"]
    assert torch.equal(teacher.conv1[0].weight, model.conv1[0].weight)


def test_head_class_count_mismatch_is_clear_or_reset(tmp_path):
    ten = build_model(NAME, InputSpec(3, 32, 32, 10))
    torch.save(ten.state_dict(), tmp_path / "ten.pt")
    with pytest.raises(ModelError, match="10-class head but the data has 4 classes; pass --reset-head"):
        load_teacher(NAME, SPEC, TeacherSource(tmp_path / "ten.pt"))
    teacher, info = load_teacher(NAME, SPEC, TeacherSource(tmp_path / "ten.pt", reset_head=True))
    assert teacher.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 4) and info["head_reset"] and info["trained_here"]
    assert torch.equal(teacher.conv1[0].weight, ten.conv1[0].weight)
    # A mismatch outside the head is still the strict loader's error.
    state = ten.state_dict()
    state["conv1.0.weight"] = state["conv1.0.weight"][:, :1]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="shape mismatch: conv1.0.weight"):
        load_teacher(NAME, InputSpec(3, 32, 32, 10), TeacherSource(tmp_path / "bad.pt"))
    with pytest.raises(ConfigError, match="either --pretrained or --teacher-checkpoint"):
        TeacherSource(tmp_path / "ten.pt", pretrained=True)
    with pytest.raises(ConfigError, match="--reset-head needs teacher weights"):
        load_teacher(NAME, SPEC, TeacherSource(reset_head=True))


def test_pretrained_offline_is_a_fast_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "cached_timm_file", lambda config: None)  # whatever this machine has cached
    started = time.perf_counter()
    code = main(["compress", "--teacher", "timm:resnet10t", "--pretrained", "--dataset", "digits", "--image-size", "32",
                 "--out", str(tmp_path / "run"), "--quiet"])
    elapsed = time.perf_counter() - started
    error = capsys.readouterr().err.strip()
    assert code == 2 and elapsed < 5
    assert len(error.splitlines()) == 1
    assert "--teacher-checkpoint" in error and "local cache" in error and "HF_HUB_OFFLINE is set" in error
    assert not (tmp_path / "run").exists()


def test_offline_is_detected_quickly_without_the_switch(monkeypatch):
    import urllib.request

    for variable in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)

    def hanging(request, timeout):  # a resolver or proxy that never answers
        time.sleep(3)
        raise OSError("no answer")

    monkeypatch.setattr(urllib.request, "urlopen", hanging)
    started = time.perf_counter()
    assert hub.reachable("huggingface.co", timeout=0.5) is False
    assert time.perf_counter() - started < 1.5
    assert "huggingface.co cannot be reached" in hub.offline_reason(hub.HF_HOST)


def test_pretrained_uses_timms_loader_with_the_local_file(tmp_path, monkeypatch):
    import timm

    hub_model = timm.create_model("test_resnet")  # 1000 classes, as published
    weights = tmp_path / "model.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() + 0.5 for k, v in hub_model.state_dict().items() if v.is_floating_point()}, weights)
    seen = []
    monkeypatch.setattr(hub, "cached_timm_file", lambda config: seen.append(config["hf_hub_id"]) or str(weights))
    with pytest.raises(ModelError, match="1000-class head but the data has 4 classes"):
        load_teacher(NAME, SPEC, TeacherSource(pretrained=True))
    teacher, info = load_teacher(NAME, SPEC, TeacherSource(pretrained=True, reset_head=True))
    assert seen[0].startswith("timm/test_resnet")
    assert torch.allclose(teacher.conv1[0].weight, hub_model.conv1[0].weight + 0.5)
    assert teacher.fc.out_features == 4 and info["file"] == str(weights) and info["trained_here"]


def test_cached_timm_file_finds_torch_hub_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "torch_hub_checkpoints", lambda: tmp_path)
    (tmp_path / "w-123.pth").write_bytes(b"x")
    assert hub.cached_timm_file({"url": "https://example.org/v1/w-123.pth"}) == str(tmp_path / "w-123.pth")
    assert hub.cached_timm_file({"url": "https://example.org/v1/other.pth"}) is None
