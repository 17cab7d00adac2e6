"""nni and torch-pruning are optional extras (issue 12, item 7): the core imports and
``vs-plugin compress`` runs on digits without them; a feature that needs one names its extra.

The "not installed" case is made in a subprocess whose import system refuses ``nni`` and
``torch_pruning`` (a meta-path finder raising ImportError), rather than in a new virtualenv.
"""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('nni', 'torch_pruning'):
            raise ImportError(f'No module named {name!r}')
        return None
sys.meta_path.insert(0, Block())
"""

CORE = BLOCK + """
import pkgutil, vs_plugin
for info in pkgutil.walk_packages(vs_plugin.__path__, 'vs_plugin.'):
    if not info.name.startswith('vs_plugin.integrations') and not info.name.endswith('__main__'):
        __import__(info.name)
assert not any(m.split('.')[0] in ('nni', 'torch_pruning') for m in sys.modules), 'the core imported an extra'
from vs_plugin.cli.main import main
code = main(['compress', '--teacher', 'mlp:in-64-out', '--student', 'mlp:in-32-out', '--dataset', 'digits',
             '--teacher-epochs', '1', '--epochs', '1', '--quiet', '--out', sys.argv[1]])
sys.exit(code)
"""

FEATURE = BLOCK + """
import sys
from vs_plugin.errors import MissingExtraError
name = sys.argv[1]
try:
    __import__(name)
except MissingExtraError as error:
    print(error)
else:
    raise SystemExit('imported without the extra')
"""


def run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_core_imports_and_compress_runs_without_nni_and_torch_pruning(tmp_path):
    result = run(CORE, str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "report.json").is_file()


def test_integrations_name_their_extra_in_one_line():
    for module, extra in (("vs_plugin.integrations.torch_pruning", "torch-pruning"), ("vs_plugin.integrations.nni", "nni")):
        result = run(FEATURE, module)
        assert result.returncode == 0, result.stderr[-3000:]
        message = result.stdout.strip()
        assert "\n" not in message and f"pip install 'vs-plugin[{extra}]'" in message


def test_structured_compress_without_torch_pruning_exits_with_the_extra_named(tmp_path):
    code = BLOCK + "from vs_plugin.cli.main import main; import sys; sys.exit(main(sys.argv[1:]))"
    result = run(code, "compress", "--structured", "--dataset", "digits", "--quiet", "--out", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "vs-plugin[torch-pruning]" in result.stderr and "Traceback" not in result.stderr


def test_extras_are_declared_and_test_installs_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "nni" not in core and "torch-pruning" not in core
    extras = project["optional-dependencies"]
    assert any(d.startswith("nni") for d in extras["nni"]) and any(d.startswith("torch-pruning") for d in extras["torch-pruning"])
    for needed in ("pytest", "nni", "torch-pruning"):
        assert any(d.startswith(needed) for d in extras["test"]), needed
