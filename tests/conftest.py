import os

import pytest
import torch

# No hub downloads in tests: timm/huggingface must fail fast instead of retrying for ~47 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
