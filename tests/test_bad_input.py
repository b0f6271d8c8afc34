"""Generated bad input: scenario files and --set values of every wrong type and range end in a one-line ValueError
naming the setting (exit 2 on the command line), never a traceback or a silently wrong run."""

import dataclasses
import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cures.simulator.config import FIELDS, SimConfig, build_config

SCALARS = st.one_of(st.text(max_size=8), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True, allow_infinity=True), st.none())
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.sampled_from("abc"), SCALARS, max_size=2))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(v)


MEMORY = {"n_prompts", "n_heldout", "prompts_per_step", "rollouts_per_step", "seeds", "threads", "dim", "hist_bins",
          "steps",
          "eval_every", "passes"}  # the settings the memory estimate depends on


def accepted_or_named(key: str, call):
    """`call()` either gives a config the schema accepts, or raises a one-line ValueError naming `key` (a pass-rate
    spec's own error for init_pass_rate; the memory estimate's, which names the sizes, only for a size; the file's
    when TOML cannot read it)."""
    try:
        cfg = call()
    except ValueError as exc:
        text = str(exc)
        assert "\n" not in text
        if key not in text:
            assert ((key == "init_pass_rate" and "pass-rate" in text) or (key in MEMORY and " GB; " in text)
                    or " is not valid TOML: " in text), text  # a file TOML cannot read is named as the file
        return None
    assert isinstance(cfg, SimConfig)
    return cfg


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(key=st.sampled_from(sorted(set(FIELDS) - {"policy_params"})), value=VALUES)
def test_scenario_files_with_any_value(tmp_path, key, value):
    if value is None:
        return  # TOML has no null
    path = tmp_path / "s.toml"
    path.write_text(f"{key} = {toml_value(value)}\n")
    cfg = accepted_or_named(key, lambda: build_config(str(path)))
    if cfg is not None:  # accepted values keep their exact type
        default = FIELDS[key].default
        got = getattr(cfg, key)
        if isinstance(default, bool):
            assert isinstance(got, bool)
        elif isinstance(default, int) and default is not None:
            assert isinstance(got, int) and not isinstance(got, bool)
        elif isinstance(default, float):
            assert isinstance(got, int | float) and not isinstance(got, bool) and math.isfinite(got)


@settings(max_examples=200, deadline=None)
@given(table=VALUES)
def test_policy_tables_of_any_shape(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("p") / "s.toml"
    if isinstance(table, dict):
        path.write_text("[policy]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items() if v is not None))
    elif table is not None:
        path.write_text(f"policy = {toml_value(table)}\n")
    else:
        return
    try:
        build_config(str(path))
    except ValueError as exc:
        assert "\n" not in str(exc)


def test_every_field_is_in_the_schema():
    """No setting escapes validation: each field has a type the schema checks (not Any)."""
    for f in dataclasses.fields(SimConfig):
        assert f.type != "Any", f.name


CLI_VALUES = st.one_of(st.text(alphabet="abcxyz019.-+e\"'[]{}", min_size=1, max_size=6),
                       st.integers(-10**15, 10**15).map(str), st.sampled_from(["nan", "inf", "-inf", "1e400", "true"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(set(FIELDS) - {"policy_params"}) + ["policy.tau", "policy.n_pre", "policy.prior"]),
       text=CLI_VALUES)
def test_command_line_set_values(key, text):
    """The command line in-process (typer's runner: an exception that escapes the CLI is `res.exception`), so that
    many generated values fit in the suite's time; `test_cli.py` runs the same errors in subprocesses."""
    from typer.testing import CliRunner

    from cures.cli import app

    res = CliRunner().invoke(app, ["simulate", "--steps", "2", "--n-prompts", "60", "--seeds", "1", "--set",
                                   f"{key}={text}", "--set", "steps=2", "--set", "n_prompts=60"],
                             env={"NO_COLOR": "1", "COLUMNS": "300"})
    assert res.exit_code in (0, 2), (res.exit_code, res.output[-2000:])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    if res.exit_code == 2:
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.parametrize(("toml", "match"), [
    ("seed = 1.5", "seed: input should be a valid integer"), ('steps = "10"', "steps: input should be a valid int"),
    ("policy = 5", "policy must be a table"), ("policy_params = 3", "policy_params: input should be a valid dict"),
    ('score_norms = "false"', "score_norms: input should be a valid boolean"),
    ("a_spread = 1e300", "a_spread: input should be less than or equal to 5"),
    ('init_pass_rate = "beta:inf,2"', "finite A, B"), ("eps = 0", "eps: input should be greater than 0"),
    ("n_prompts = 1_000_000_000_000", "GB; "),
    ("[policy]\nrollouts_per_step = 8", "policy.rollouts_per_step: set the top-level rollouts_per_step"),
    ("batch_size = 8", "'batch_size' was renamed 'prompts_per_step'"),
    ("[policy]\nbudget = 8", "'policy.budget' was renamed 'rollouts_per_step' in cures 0.3 \\(a setting of its own"),
    ('estimator = "drgrpo"', "estimator 'drgrpo' was renamed 'dr_grpo'"),
])
def test_named_cases(tmp_path, toml, match):
    path = tmp_path / "s.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ValueError, match=match) as info:
        build_config(str(path))
    assert str(path) in str(info.value) or "policy" in toml or "GB" in match or "init" in toml


def test_a_full_disk_is_one_line_and_leaves_no_half_written_results(tmp_path, monkeypatch):
    """ENOSPC in the middle of writing results (injected into pandas' writer, as a full disk raises it): one line
    naming the reason and the file, exit 2, and --out holds nothing of the failed run (results are staged)."""
    import errno

    import pandas as pd
    from typer.testing import CliRunner

    from cures.cli import app

    def full(self, target, *args, **kwargs):  # a path or an open file, as pandas takes; a write on an open file
        if hasattr(target, "write"):            # fails without a file name
            target.write(b"PAR1 half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        Path(target).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["simulate", "--policy", "grpo", "--n-prompts", "200", "--steps", "5",
                                   "--out", str(out)])
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert res.exit_code == 2, res.output
    assert "No space left on device" in err and "curves" in err and "Traceback" not in err
    assert err.strip().count("\n") == 0
    assert not [p for p in out.rglob("*") if p.name != ".cures.lock"]
    assert not list(tmp_path.glob(".*.staging"))
