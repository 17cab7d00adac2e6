import os

import pytest
import torch

# No hub downloads in tests: timm/huggingface must fail fast instead of retrying for ~47 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def built_objectives(monkeypatch):
    """Records (config, teacher given) of every VariationalStudentObjective built while the test runs."""
    from vs_plugin.losses.objective import VariationalStudentObjective

    built = []
    original = VariationalStudentObjective.__init__

    def recording(self, student, teacher=None, config=None, **kwargs):
        built.append((config, teacher is not None))
        original(self, student, teacher, config, **kwargs)

    monkeypatch.setattr(VariationalStudentObjective, "__init__", recording)
    return built
