"""Atomic file writes, and pickle-free, versioned array files (.npz) for posterior and policy state."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def atomic_write(path, write) -> Path:
    """Create `path` atomically: `write(binary file)` fills a temporary file beside it, which is fsynced, given the
    usual permissions (0666 minus the umask) and renamed over `path`; a failure leaves `path` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc.filename, str | os.PathLike):  # raised on the open
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc  # file: name the file (ENOSPC)
        raise
    return path


def check_output_dir(path, option: str) -> Path:
    """Fail before any work, with a one-line ValueError naming `option`, if `path` cannot become a directory of
    results: it is a file, sits under a file, or its nearest existing folder is not writable."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file, not a directory")
    nearest = next((p for p in (path, *path.parents) if p.exists()), None)
    if nearest is None or not nearest.is_dir():
        raise ValueError(f"{option} {path}: {nearest} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot write in {nearest} ({exc.strerror})") from None
    return path


@contextlib.contextmanager
def staged_outputs(out, primary: str):
    """A result directory that never shows a mix of two runs or a half-written run: the block writes into a private
    staging folder beside `out`; on success its files are moved into `out` one by one (each `os.replace` is atomic)
    under an exclusive lock on `out/.cures.lock`, with `primary` (the file that says a run completed) removed first
    and moved last. A failed or interrupted block leaves `out` as it was."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".staging", dir=out.parent))
    try:
        yield stage
        names = sorted(p.name for p in stage.iterdir() if p.name != primary)
        with open(out / ".cures.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            (out / primary).unlink(missing_ok=True)
            for name in names:
                os.replace(stage / name, out / name)
            if (stage / primary).exists():
                os.replace(stage / primary, out / primary)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


RUN_LOCK = ".cures-run.lock"


@contextlib.contextmanager
def run_lock(directory, option: str = "output_dir", what: str = "run"):
    """Hold `directory/.cures-run.lock` (an exclusive `flock`) for the block: a second run into the same directory
    is a one-line ValueError naming the holder (pid, host, command, start). The kernel drops the lock when its
    process ends, however it ends (kill -9 included), so a lock left by a dead run is taken over, not obeyed."""
    import socket
    import sys
    import time

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fh = open(directory / RUN_LOCK, "a+")  # noqa: SIM115 - held open for the block
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ValueError(f"{option} {directory}: another {what} is writing there ({holder}); wait for it to end "
                             f"or choose another {option}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}, `{' '.join(sys.argv[:3])}`, started "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        yield directory
    finally:
        fh.close()


def atomic_write_text(path, text: str) -> Path:
    """`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_save_npz(path, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write `arrays` plus a JSON `meta` record to `path` atomically (`atomic_write`)."""
    if "__meta__" in arrays:
        raise ValueError("'__meta__' is a reserved array name")
    payload = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    payload["__meta__"] = np.array(json.dumps(meta, sort_keys=True))
    return atomic_write(path, lambda fh: np.savez(fh, **payload))


def load_npz(path, expected_format: str, supported_versions: tuple[int, ...]) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a file written by `atomic_save_npz`; check its format name and version. Never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{path} is not a readable .npz state file ({exc})") from None
    if "__meta__" not in arrays:
        raise ValueError(f"{path} has no metadata record; not a cures state file")
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its metadata record is not a JSON object; not a cures state file")
    if meta.get("format") != expected_format:
        raise ValueError(f"{path} holds {meta.get('format')!r}, expected {expected_format!r}")
    if meta.get("version") not in supported_versions:
        raise ValueError(
            f"{path} has format version {meta.get('version')}; this cures reads {list(supported_versions)}"
        )
    return meta, arrays
