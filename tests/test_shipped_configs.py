"""Every config shipped in configs/ parses and validates, so none can rot unnoticed."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def _all(pattern: str) -> list[Path]:
    return sorted(CONFIGS.glob(pattern))


@pytest.mark.parametrize("path", _all("compare-*.yaml"), ids=lambda p: p.name)
def test_compare_configs(path):
    from vs_plugin.compare.config import load_compare_config

    config = load_compare_config(path)
    assert config.to_study(path.stem).rows, "every method name resolves and plans at least one run"


@pytest.mark.parametrize("path", _all("experiments/*.yaml"), ids=lambda p: p.name)
def test_experiment_configs(path):
    text = path.read_text()
    from vs_plugin.compare.registry import method_names
    from vs_plugin.study import load_study

    config = load_study(path)
    assert len(config.seeds) >= 1 and config.rows
    for row in config.rows:
        if row.kind == "method":
            assert row.method in method_names()
    assert str(path.relative_to(ROOT)) in text, "the file names its own command"


def test_there_are_configs_for_every_experiment():
    names = {p.name for p in _all("experiments/*.yaml")}
    for expected in ("paper-mlp-fashion-mnist.yaml", "paper-cnn-fashion-mnist.yaml", "low-data-fashion-mnist.yaml",
                     "low-data-digits.yaml", "structured-resnet18-fashion-mnist.yaml", "structured-convnext-fashion-mnist.yaml",
                     "paper-mlp-mnist.yaml", "paper-cnn-cifar10.yaml"):
        assert expected in names
