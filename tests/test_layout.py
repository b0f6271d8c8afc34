"""The dependency rule: `cures` imports none of the other packages, and nothing outside `backends` imports torch."""

import subprocess
import sys

HEAVY = ("torch", "transformers", "trl", "accelerate", "datasets")


def imported_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return set(res.stdout.split())


def test_core_imports_no_other_package():
    mods = imported_after("import cures, cures.policies, cures.theory, cures.posterior")
    assert not {m for m in mods if m.split(".")[0] in ("simulator", "analysis", "backends", *HEAVY)}


def test_cli_simulator_and_analysis_import_no_deep_learning_stack():
    mods = imported_after("import cures.cli, cures.simulator.run, cures.simulator.compare, cures.analysis.report")
    assert not {m for m in mods if m.split(".")[0] in HEAVY}
