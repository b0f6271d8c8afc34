"""One import namespace: a built wheel installs `cures` and nothing else at the top level, with every subpackage."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"cures": "cures", "simulator": "cures.simulator", "analysis": "cures.analysis", "backends": "cures.backends"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                          "--wheel-dir", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    (found,) = out.glob("cures-*.whl")
    return found


def _expected_modules() -> set[str]:
    """Every module of the repository's four folders, by the name it must install under."""
    names = set()
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(ROOT / folder).with_suffix("")
            names.add(".".join([package, *rel.parts]).removesuffix(".__init__"))
    return names


def test_the_wheel_holds_only_the_cures_namespace_and_every_module(wheel):
    files = zipfile.ZipFile(wheel).namelist()
    top = {f.split("/")[0] for f in files}
    assert {t for t in top if not t.endswith(".dist-info")} == {"cures"}
    modules = {f[:-3].replace("/", ".").removesuffix(".__init__") for f in files if f.endswith(".py")}
    assert modules == _expected_modules()
    for data in ("cures/simulator/scenarios/paper-1.5b.toml", "cures/simulator/grids/regimes.toml"):
        assert data in files


def test_the_installed_wheel_runs_without_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                          str(wheel)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    code = ("import cures, cures.simulator.config as c, cures.analysis, cures.backends\n"
            "print(cures.__file__); print(c.SCENARIO_DIR / 'paper-1.5b.toml')\n"
            "import importlib.util\n"
            "print([n for n in ('simulator', 'analysis', 'backends') if importlib.util.find_spec(n)])")
    env = {**os.environ, "PYTHONPATH": str(target), "CURES_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_CACHE_DIR", None)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    init, scenario, stray = res.stdout.splitlines()
    assert Path(init).is_relative_to(target) and Path(scenario).is_file()
    assert stray == "[]"


def test_old_top_level_names_say_the_new_one():
    res = subprocess.run([sys.executable, "-c", "import simulator.run"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert res.returncode != 0 and "import cures.simulator, not simulator" in res.stderr
