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
