"""Where Numba keeps the compiled kernels of `cures`, and why a stale kernel is never loaded.

Numba keys a cached function on its own source file only: when a kernel in one file changes, the functions of other
files that call it would keep loading their stale machine code. So, unless the user chose a directory by setting
`NUMBA_CACHE_DIR`, `import cures` points Numba at a cache directory named after a hash of every Numba-using source
of the package:

    $CURES_CACHE_DIR/numba/<hash>/     (CURES_CACHE_DIR defaults to $XDG_CACHE_HOME/cures, else ~/.cache/cures)

A changed source gives a new hash and so an empty directory: nothing is deleted, nothing under the installed package
is written. When a new directory is made, sibling directories not used for `STALE_DAYS` days are removed (they belong
to older sources of this package only). With `NUMBA_CACHE_DIR` set, Numba uses exactly that directory and keeps its
own per-file invalidation; clear it yourself after editing the kernels of a checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # cures/, holding cures.policies; the installed cures.simulator etc. too
STALE_DAYS = 7


def source_digest(roots: list[Path] | None = None) -> str:
    """sha256 over the relative path and bytes of every module under `roots` that uses Numba, directly or through
    `cures._jit.njit` (only those can change compiled code); the default roots are the directories of `cures` and
    its subpackages, wherever they live."""
    roots = _package_roots() if roots is None else roots
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            data = path.read_bytes()
            if b"numba" in data or b"njit" in data:
                digest.update(f"{root.name}/{path.relative_to(root)}".encode())
                digest.update(data)
    return digest.hexdigest()


def _package_roots() -> list[Path]:
    """cures/ and the folders that install as cures.simulator, cures.analysis and cures.backends (in a checkout,
    the repository's top-level simulator/, analysis/, backends/; in a wheel, subfolders of cures/)."""
    roots = [PACKAGE]
    for name in ("simulator", "analysis", "backends"):
        for candidate in (PACKAGE / name, PACKAGE.parent / name):
            if (candidate / "__init__.py").is_file():
                if candidate.parent != PACKAGE:
                    roots.append(candidate)
                break
    return roots


def cache_root() -> Path:
    """The directory under which `cures` keeps its Numba caches (CURES_CACHE_DIR, else the user cache dir)."""
    if os.environ.get("CURES_CACHE_DIR"):
        return Path(os.environ["CURES_CACHE_DIR"]).expanduser() / "numba"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "cures" / "numba"


def configure() -> Path | None:
    """Point Numba at this source tree's cache directory unless NUMBA_CACHE_DIR is set; returns the directory used
    (None: the user's NUMBA_CACHE_DIR). Called by `import cures`, before any kernel is defined."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    root = cache_root()
    folder = root / source_digest()[:20]
    try:
        new = not folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if new:
            _remove_stale(root, keep=folder)
        else:
            os.utime(folder)  # in use: not stale for the other source trees' pruning
    except OSError:  # no writable cache directory: Numba falls back to its own locations
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(folder)  # read by Numba at import and before every compilation
    numba = sys.modules.get("numba")
    if numba is not None:  # imported before cures: its config was read already
        numba.config.CACHE_DIR = str(folder)
    return folder


def _remove_stale(root: Path, keep: Path) -> None:
    """Remove the caches of other source hashes that were not touched for STALE_DAYS days."""
    cutoff = time.time() - STALE_DAYS * 86400
    for other in root.iterdir():
        if other != keep and other.is_dir() and other.stat().st_mtime < cutoff:
            shutil.rmtree(other, ignore_errors=True)
