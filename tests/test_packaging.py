"""integrations/ installs as vs_plugin.integrations (never a top-level ``integrations``), in a
normal wheel install and in an editable install; the package list in pyproject.toml is complete."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pip(*args: str, cwd: Path = ROOT) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


ISOLATED_IMPORT = """
import importlib.util, site, sys
# Forget any vs_plugin this interpreter already knows (e.g. the developer's own editable install).
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]
sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, '__module__', '').startswith('__editable__')]
sys.path_importer_cache.clear()
assert importlib.util.find_spec('vs_plugin') is None, 'vs_plugin visible before the install under test'
site.addsitedir(sys.argv[1])
assert importlib.util.find_spec('integrations') is None, 'a top-level integrations package leaked'
import vs_plugin, vs_plugin.integrations
print(vs_plugin.__file__)
print(vs_plugin.integrations.__file__)
"""


def import_from(site_dir: Path, cwd: Path) -> str:
    """Import vs_plugin.integrations in a fresh interpreter that sees only ``site_dir`` (plus the deps)."""
    result = subprocess.run(
        [sys.executable, "-I", "-c", ISOLATED_IMPORT, str(site_dir)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_package_list_is_complete():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    found = {
        "vs_plugin." + ".".join(p.parent.relative_to(ROOT / "vs_plugin").parts) if p.parent != ROOT / "vs_plugin" else "vs_plugin"
        for p in (ROOT / "vs_plugin").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    found |= {
        ".".join(("vs_plugin", "integrations", *p.parent.relative_to(ROOT / "integrations").parts))
        for p in (ROOT / "integrations").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert found == declared
    for package in declared:
        parts = package.split(".")
        folder = ROOT / "integrations" / Path(*parts[2:]) if parts[1:2] == ["integrations"] else ROOT / Path(*parts)
        assert (folder / "__init__.py").is_file(), f"{folder} needs an __init__.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(out))
    return next(out.glob("vs_plugin-*.whl"))


def test_wheel_maps_integrations_under_vs_plugin(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "vs_plugin/integrations/__init__.py" in names
    assert not any(n.startswith("integrations/") for n in names)
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["vs_plugin"]
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "vs-plugin = vs_plugin.cli.main:main" in entry_points


def test_normal_install_imports_integrations(wheel, tmp_path):
    target = tmp_path / "site"
    pip("install", "--no-deps", "--ignore-installed", "-q", "--target", str(target), str(wheel))
    out = import_from(target, cwd=tmp_path)
    assert str(target / "vs_plugin" / "integrations" / "__init__.py") in out


def test_editable_install_imports_integrations_from_the_repository(tmp_path):
    prefix = tmp_path / "prefix"
    # --ignore-installed: never uninstall the environment's own vs-plugin while installing the copy under test.
    pip("install", "--no-deps", "--no-build-isolation", "--ignore-installed", "-q", "-e", ".", "--prefix", str(prefix))
    site_dir = next(prefix.glob("lib/python*/site-packages"))
    out = import_from(site_dir, cwd=tmp_path)
    assert str(ROOT / "integrations" / "__init__.py") in out
    assert str(ROOT / "vs_plugin" / "__init__.py") in out
