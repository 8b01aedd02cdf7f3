"""The package's layers (pyproject.toml, [tool.importlinter]) hold: no upward import, no cycle."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-logo", "--no-cache", "--config", str(ROOT / "pyproject.toml")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_every_top_level_module_has_a_layer():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    layered = {name.strip() for layer in layers for name in layer.split("|")}
    package = ROOT / "src" / "hma"
    modules = {f"hma.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {f"hma.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert modules - layered == set(), "modules outside every layer of the contract"
    assert layered - modules == set(), "layers that name no module"
