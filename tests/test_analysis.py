"""The numbers behind the figures, the report command's files, and the notebooks."""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from cures.analysis.report import FIGURES
from cures.analysis.theory import allocations, gradient_variance_points, total_variance

ROOT = Path(__file__).resolve().parent.parent


def test_monte_carlo_gradient_variance_matches_eq21_on_a_grid():
    """Every (p, n, noise) point's interval contains Eq. 21 / n; Bonferroni-adjusted over the whole grid."""
    ps, ns, norms = (0.1, 0.3, 0.5, 0.7, 0.9), (4, 16), ((1.0, 1.0), (0.5, 2.0))
    k = len(ps) * len(ns) * len(norms)
    rows = gradient_variance_points(3000, seed=11, ps=ps, ns=ns, norms=norms, level=1 - 0.05 / k)
    assert len(rows) == k
    outside = [r for r in rows if not r["lo"] <= r["eq21"] <= r["hi"]]
    assert not outside, outside


@pytest.mark.parametrize("seed", range(6))
def test_cures_allocation_leaves_the_smallest_total_variance(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(8, 80))
    p = np.concatenate([rng.beta(0.5, 0.5, m - 2), [0.0, 1.0]])
    rollouts_per_step = int(rng.integers(4, 16)) * p.size
    alloc = allocations(p, rollouts_per_step)
    assert all(n.sum() == rollouts_per_step for n in alloc.values())
    variances = {k: total_variance(p, n) for k, n in alloc.items()}
    assert all(variances["cures"] <= v + 1e-12 for v in variances.values()), variances
    assert variances["uniform"] > variances["cures"]


def test_report_writes_every_promised_file(tmp_path):
    out = tmp_path / "report"
    env = {"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    res = subprocess.run([sys.executable, "-m", "cures", "report", "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr
    for name, _ in FIGURES:
        for ext in ("png", "svg"):
            assert (out / f"{name}.{ext}").stat().st_size > 5_000, name
    md = (out / "report.md").read_text()
    assert all(f"({name}.png)" in md for name, _ in FIGURES)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES) and "<table>" in html
    assert (out / "report_data.json").is_file()


def test_report_rejects_bad_sizes(tmp_path):
    res = subprocess.run([sys.executable, "-m", "cures", "report", "--seeds", "1", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 2 and "--seeds must be at least 2" in res.stderr


@pytest.mark.parametrize("name", ["01_gradient_variance", "02_allocation_policies", "03_policy_comparison"])
def test_notebook_executes(name, tmp_path):
    path = tmp_path / f"{name}.ipynb"
    shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", path)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
