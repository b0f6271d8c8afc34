"""Stale Numba caches are removed when any source of the project changes."""

from cures._numba_cache import STAMP, invalidate_stale_kernels


def test_cached_kernels_are_deleted_exactly_when_a_source_changes(tmp_path):
    for pkg in ("cures", "simulator"):
        (tmp_path / pkg / "__pycache__").mkdir(parents=True)
        (tmp_path / pkg / "mod.py").write_text("import numba\nx = 1\n")
    cached = [tmp_path / "cures" / "__pycache__" / "mod.f-1.py311.nbi",
              tmp_path / "simulator" / "__pycache__" / "mod.g-2.py311.1.nbc"]
    keep = tmp_path / "cures" / "__pycache__" / "mod.cpython-311.pyc"

    def populate():
        for f in (*cached, keep):
            f.write_text("")

    populate()
    assert invalidate_stale_kernels(tmp_path)  # no stamp yet
    assert not any(f.exists() for f in cached) and keep.exists()
    assert (tmp_path / "cures" / "__pycache__" / STAMP).is_file()
    populate()
    assert not invalidate_stale_kernels(tmp_path)  # nothing changed: the cache stays
    assert all(f.exists() for f in cached)
    (tmp_path / "cures" / "cli.py").write_text("print()\n")  # no Numba in it: compiled code cannot change
    assert not invalidate_stale_kernels(tmp_path)
    (tmp_path / "simulator" / "mod.py").write_text("import numba\nx = 2\n")  # a kernel in another package changed
    assert invalidate_stale_kernels(tmp_path)
    assert not any(f.exists() for f in cached)
