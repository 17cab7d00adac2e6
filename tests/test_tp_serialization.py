"""Save and load a pruned model without pickling modules: JSON spec + state_dict, rebuilt on a
fresh model by name (or on a fresh instance) by replaying the pruning plan."""

import json
import pickle

import pytest
import timm
import torch

from tp_support import SmallResNet, kill_positions
from vs_plugin import ObjectiveConfig, finalize
from vs_plugin.errors import CheckpointError, ConfigError
from vs_plugin.integrations.torch_pruning import PruneConfig, VariationalStudentPruner, load_pruned, save_pruned
from vs_plugin.models import InputSpec, build_model


def pruned(model, example, by="ratio"):
    pruner = VariationalStudentPruner(model, example, num_train_samples=10, objective=ObjectiveConfig(kd_weight=0.0),
                                      prune=PruneConfig(by=by, pruning_ratio=0.4, iterative_steps=2))
    kill_positions(pruner, 0.3)
    pruner.step()
    pruner.step()
    return finalize(model).eval(), pruner.history


def test_a_named_timm_model_round_trips(tmp_path):
    torch.manual_seed(0)
    spec = InputSpec(1, 16, 16, 10)
    model, plan = pruned(build_model("timm:resnet18", spec), torch.zeros(1, 1, 16, 16))
    path = save_pruned(model, tmp_path / "run", plan, input_shape=(1, 16, 16), num_classes=10, model_name="timm:resnet18")
    assert path == tmp_path / "run" / "pruned.json" and (tmp_path / "run" / "pruned.pt").is_file()
    saved = json.loads(path.read_text())
    assert saved["model"] == "timm:resnet18" and saved["plan"] == [item.to_json() for item in plan]
    assert saved["widths"]["layer1.0.conv1"] == [model.layer1[0].conv1.out_channels, model.layer1[0].conv1.in_channels]
    # The weights file holds tensors only: loadable with weights_only=True, no module pickled.
    state = torch.load(tmp_path / "run" / "pruned.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded = load_pruned(tmp_path / "run")
    inputs = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model(inputs))


def test_a_vit_keeps_its_attention_widths(tmp_path):
    torch.manual_seed(0)
    make = lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=8, depth=2)
    model, plan = pruned(make(), torch.zeros(1, 3, 32, 32), by="threshold")
    assert model.blocks[0].attn.head_dim < 64
    save_pruned(model, tmp_path / "vit.json", plan, input_shape=(3, 32, 32), num_classes=10)
    saved = json.loads((tmp_path / "vit.json").read_text())
    assert saved["model"] is None and saved["attention"]["blocks.0.attn"]["head_dim"] == model.blocks[0].attn.head_dim
    with pytest.raises(CheckpointError, match="names no model"):
        load_pruned(tmp_path / "vit.json")
    loaded = load_pruned(tmp_path / "vit.json", model=make())
    assert loaded.blocks[0].attn.head_dim == model.blocks[0].attn.head_dim
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(inputs), model(inputs), atol=1e-6)


def test_mismatches_and_bad_input_are_clear_errors(tmp_path):
    model, plan = pruned(SmallResNet(), torch.zeros(1, 3, 8, 8))
    gated = VariationalStudentPruner(SmallResNet(), torch.zeros(1, 3, 8, 8), num_train_samples=10, objective=ObjectiveConfig(kd_weight=0.0)).model
    with pytest.raises(ConfigError, match="finalize"):
        save_pruned(gated, tmp_path / "x.json", [], input_shape=(3, 8, 8), num_classes=4)
    save_pruned(model, tmp_path / "small.json", plan, input_shape=(3, 8, 8), num_classes=4)
    spec = json.loads((tmp_path / "small.json").read_text())
    spec["widths"]["conv1"] = [99, 8]
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    (tmp_path / "bad.pt").write_bytes((tmp_path / "small.pt").read_bytes())
    with pytest.raises(CheckpointError, match="widths differ"):
        load_pruned(tmp_path / "bad.json", model=SmallResNet())
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pruned(tmp_path / "missing")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a pruned-model spec"):
        load_pruned(tmp_path / "other.json")
    assert b"SmallResNet" not in pickle.dumps(json.loads((tmp_path / "small.json").read_text()))


class VersionedResNet(SmallResNet):
    """Reads the state_dict's module version on load, as torchvision's MNASNet does (it refuses
    or rebuilds its stem when the version metadata is missing)."""

    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        if local_metadata.get("version") != self._version:
            raise ValueError(f"VersionedResNet needs state_dict version 2, got {local_metadata.get('version')}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)


def test_module_versions_survive_save_and_load(tmp_path):
    torch.manual_seed(0)
    model, plan = pruned(VersionedResNet(), torch.zeros(1, 3, 8, 8))
    save_pruned(model, tmp_path / "v.json", plan, input_shape=(3, 8, 8), num_classes=4)
    # A plain torch user loads the weights file into the pruned model with PyTorch alone.
    state = torch.load(tmp_path / "v.pt", weights_only=True)
    assert state._metadata[""]["version"] == 2
    inputs = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_pruned(tmp_path / "v.json", model=VersionedResNet())(inputs), model(inputs))
        # A weights file written without the versions (before they were kept) still loads: the
        # freshly built architecture supplies them.
        torch.save(dict(state), tmp_path / "v.pt")
        assert torch.equal(load_pruned(tmp_path / "v.json", model=VersionedResNet())(inputs), model(inputs))
