"""Numba's cache directory: one per source hash, outside the package, NUMBA_CACHE_DIR respected."""

import os
import subprocess
import sys
import time
from pathlib import Path

from cures._numba_cache import STALE_DAYS, source_digest

ROOT = Path(__file__).resolve().parent.parent


def test_digest_changes_exactly_when_a_numba_source_changes(tmp_path):
    for pkg in ("cures", "simulator"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "mod.py").write_text("import numba\nx = 1\n")
    roots = [tmp_path / "cures", tmp_path / "simulator"]
    first = source_digest(roots)
    assert source_digest(roots) == first
    (tmp_path / "cures" / "cli.py").write_text("print()\n")  # no Numba in it: compiled code cannot change
    assert source_digest(roots) == first
    (tmp_path / "simulator" / "mod.py").write_text("import numba\nx = 2\n")  # a kernel in another folder changed
    assert source_digest(roots) != first
    (tmp_path / "simulator" / "mod.py").write_text("import numba\nx = 1\n")
    assert source_digest(roots) == first
    (tmp_path / "simulator" / "mod.py").rename(tmp_path / "simulator" / "moved.py")  # same bytes, other module
    assert source_digest(roots) != first
    second = source_digest(roots)
    kernel = tmp_path / "cures" / "policy.py"  # a kernel written with cures._jit.njit, no "numba" in its text
    kernel.write_text("from cures._jit import njit\n@njit(cache=True)\ndef f(x):\n    return x\n")
    third = source_digest(roots)
    assert third != second
    kernel.write_text("from cures._jit import njit\n@njit(cache=True)\ndef f(x):\n    return x + 1\n")
    assert source_digest(roots) != third


def test_default_roots_cover_the_checkouts_top_level_folders():
    from cures._numba_cache import _package_roots

    assert {p.name for p in _package_roots()} == {"cures", "simulator", "analysis", "backends"}


KERNEL = """
import numba, sys
sys.path.insert(0, sys.argv[1])
import cures
import kern
print(kern.f(2))
print(numba.config.CACHE_DIR)
"""


def _run_kernel(tmp_path, env_extra):
    (tmp_path / "mods").mkdir(exist_ok=True)
    (tmp_path / "mods" / "kern.py").write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n")
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "CURES_CACHE_DIR")}
    env.update(env_extra)
    res = subprocess.run([sys.executable, "-c", KERNEL, str(tmp_path / "mods")], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_kernels_are_cached_under_the_source_hash_and_never_beside_the_sources(tmp_path):
    out = _run_kernel(tmp_path, {"CURES_CACHE_DIR": str(tmp_path / "cache")})
    assert out[0] == "3"
    folder = Path(out[1])
    assert folder.parent == tmp_path / "cache" / "numba" and source_digest().startswith(folder.name)
    assert list(folder.rglob("*.nbi")) and list(folder.rglob("*.nbc"))
    assert not list((tmp_path / "mods").rglob("*.nb[ic]"))  # nothing written beside the module


def test_a_users_numba_cache_dir_is_used_as_given(tmp_path):
    mine = tmp_path / "mine"
    out = _run_kernel(tmp_path, {"NUMBA_CACHE_DIR": str(mine), "CURES_CACHE_DIR": str(tmp_path / "cache")})
    assert Path(out[1]) == mine and list(mine.rglob("*.nbi"))
    assert not (tmp_path / "cache").exists()


def test_a_new_source_tree_removes_only_caches_unused_for_days(tmp_path):
    root = tmp_path / "cache" / "numba"
    old, recent = root / "0", root / "1"
    for d in (old, recent):
        (d / "x").mkdir(parents=True)
    past = time.time() - (STALE_DAYS + 1) * 86400
    os.utime(old, (past, past))
    _run_kernel(tmp_path, {"CURES_CACHE_DIR": str(tmp_path / "cache")})
    assert not old.exists() and recent.exists()


def test_import_writes_nothing_in_the_package():
    before = {p for p in ROOT.rglob("*.nb[ic]") if ".venv" not in p.parts}
    assert not before, f"compiled kernels beside the sources: {sorted(before)[:3]}"
