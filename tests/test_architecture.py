"""The house rules of docs/architecture.md: the core never imports an adapter at module level,
adapters never import the core CLI, there is one study engine and no training loop under integrations/."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_core_imports_no_adapter_at_module_level():
    core = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / "vs_plugin").rglob("*.py") if p.name != "__main__.py"
    )
    code = (
        "import sys, importlib\n"
        f"for name in {core!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('vs_plugin.integrations')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"core modules import adapters at module level: {out}"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(("." * node.level) + node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_adapters_do_not_import_the_core_cli():
    offenders = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if "vs_plugin.cli" in n)
                 for p in (ROOT / "integrations").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_one_study_engine():
    assert not (ROOT / "vs_plugin" / "experiments").exists()
    assert not list((ROOT / "integrations" / "torch_pruning").glob("experiment*.py"))
    assert not (ROOT / "vs_plugin" / "compare" / "runner.py").exists()
    for path in list((ROOT / "vs_plugin").rglob("*.py")) + list((ROOT / "integrations").rglob("*.py")):
        if path.parent.name != "study":
            assert "def summarise(" not in path.read_text(), f"{path}: a second table writer"


def test_the_variational_and_objective_configs_are_declared_once_and_stay_flat_settings():
    import dataclasses

    from vs_plugin.losses.objective import ObjectiveConfig
    from vs_plugin.pipeline.settings import NOT_SETTINGS, CompressSettings
    from vs_plugin.variationalize import VariationalConfig

    settings = {f.name: f for f in dataclasses.fields(CompressSettings)}
    overridden = {"init_log_sigma2": None, "kl_min_samples": 1000}  # declared in CompressSettings itself
    for config in (VariationalConfig, ObjectiveConfig):
        for field in dataclasses.fields(config):
            if field.name in NOT_SETTINGS:
                continue
            assert field.name in settings, f"{config.__name__}.{field.name} is no flat setting"
            assert settings[field.name].default == overridden.get(field.name, field.default), field.name
    # flat values reach the nested configs
    flat = CompressSettings(kl_weight=0.25, lp_k=7, exclude=("fc*",), head=False, threshold=2.5, kl_min_samples=10)
    objective, variational = flat.objective_config(), flat.variational_config(student_from_teacher=True)
    assert (objective.kl_weight, objective.lp_k, objective.kl_min_samples) == (0.25, 7, 10)
    assert (variational.exclude, variational.head, variational.threshold) == (("fc*",), False, 2.5)
    assert variational.init_log_sigma2 == -15.0 and flat.variational_config(student_from_teacher=False).init_log_sigma2 == -10.0
    assert CompressSettings.from_mapping(flat.to_dict()) == flat  # report.json's config repeats the run


def test_one_resume_check_names_the_other_kind_of_checkpoint():
    import pytest

    from vs_plugin.errors import CheckpointError, ConfigError
    from vs_plugin.pipeline.phases import CHECKPOINT_FORMAT
    from vs_plugin.pipeline.run import check_resumable
    from vs_plugin.pipeline.structured import STRUCTURED_CHECKPOINT_FORMAT

    with pytest.raises(CheckpointError, match="resume it without --structured"):
        check_resumable({"format": CHECKPOINT_FORMAT, "settings": {}}, {}, 1, STRUCTURED_CHECKPOINT_FORMAT)
    with pytest.raises(CheckpointError, match="another format"):
        check_resumable({"format": STRUCTURED_CHECKPOINT_FORMAT, "settings": {}}, {}, 1)
    with pytest.raises(ConfigError, match="kl_weight: 1.0 -> 0.5"):
        check_resumable({"format": STRUCTURED_CHECKPOINT_FORMAT, "settings": {"kl_weight": 1.0}}, {"kl_weight": 0.5}, 1,
                        STRUCTURED_CHECKPOINT_FORMAT)
