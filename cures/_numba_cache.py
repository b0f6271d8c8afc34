"""Keep Numba's on-disk cache consistent with the sources.

Numba keys a cached function on its own file only: when a kernel in one file changes, functions in other files that
call it keep loading their stale machine code. At import, `cures` hashes the Numba-using sources of its sibling
packages and, when the hash differs from the one recorded beside the cache, deletes their cached kernels so they
recompile.
(Caches that NUMBA_CACHE_DIR moves elsewhere are not covered.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGES = ("cures", "simulator", "analysis", "backends")
STAMP = "numba-sources.sha256"


def _sources(root: Path) -> list[Path]:
    """Every module of the project that uses Numba (only those can change compiled code)."""
    files = sorted(p for pkg in PACKAGES if (root / pkg).is_dir() for p in (root / pkg).rglob("*.py"))
    return [p for p in files if b"numba" in p.read_bytes()]


def invalidate_stale_kernels(root: Path | None = None) -> bool:
    """Delete cached kernels of this project if any source changed since they were compiled; True if deleted."""
    root = Path(__file__).resolve().parent.parent if root is None else root
    digest = hashlib.sha256()
    for path in _sources(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    stamp = root / "cures" / "__pycache__" / STAMP
    try:
        if stamp.read_text() == digest.hexdigest():
            return False
    except OSError:
        pass
    try:
        for pkg in PACKAGES:
            if (root / pkg).is_dir():
                for cached in (root / pkg).rglob("__pycache__/*.nb[ic]"):
                    cached.unlink(missing_ok=True)
        from cures._io import atomic_write_text

        atomic_write_text(stamp, digest.hexdigest())
    except OSError:  # a read-only install: its sources cannot change under its cache
        return False
    return True
