"""The layer contract of pyproject.toml's [tool.importlinter], checked by import-linter on the installed layout
(the checkout's top-level folders placed where `package-dir` installs them), and shown to fail when broken."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PYPROJECT = ROOT / "pyproject.toml"


def installed_layout(dest: Path) -> Path:
    """Copy every package's .py files to where setuptools' package-dir installs them; returns the import root."""
    tool = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]
    for package in tool["packages"]:
        top = max((k for k in tool["package-dir"] if package == k or package.startswith(k + ".")), key=len)
        source = ROOT / tool["package-dir"][top] / Path(*package.split(".")[len(top.split(".")):])
        target = dest / Path(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for f in source.glob("*.py"):
            shutil.copy2(f, target / f.name)
    return dest


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    # import-linter puts its working directory first on sys.path: run it in the layout, not in the checkout
    return subprocess.run([str(lint), str(PYPROJECT), "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_the_layers_hold(tmp_path):
    res = lint_imports(installed_layout(tmp_path))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout and "KEPT" in res.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("cures/policies/grpo.py", "import cures.simulator.engine", "the policy core imports none of its users"),
    ("cures/simulator/sweep.py", "from cures.analysis import regime", "the simulator imports neither"),
    ("cures/theory.py", "import torch", "torch, transformers, TRL"),
    ("cures/analysis/figures.py", "import trl", "torch, transformers, TRL"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    root = installed_layout(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\n\ndef _probe():\n    {line}\n")
    res = lint_imports(root)
    assert res.returncode == 1, res.stdout[-2000:]
    broken = [text for text in res.stdout.splitlines() if text.endswith("BROKEN")]
    assert any(text.startswith(contract) for text in broken), res.stdout[-2000:]
