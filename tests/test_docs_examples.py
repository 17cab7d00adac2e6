"""The docs' examples, written the NNI way and the torch-pruning way (issue 12): each prunes a CNN,
a timm ResNet and a timm ViT with the Variational Student, and the gates' log alpha moves."""

import os
import runpy
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


@pytest.mark.parametrize("script", ["tp_way.py", "nni_way.py"])
@pytest.mark.parametrize("kind", ["cnn", "resnet", "vit"])
@pytest.mark.filterwarnings("ignore")
def test_example_prunes_and_its_gates_train(script, kind):
    main = runpy.run_path(str(EXAMPLES / script))["main"]
    result = main(kind, steps=3)
    assert result["log_alpha_moved"] > 1e-3
    assert result["macs_after"] < 0.8 * result["macs_before"]
    assert result["output"] == (1, 10)
