"""The `cures` command line, run as a user would (a subprocess): help, version, policies, one-line errors."""

import json
import signal
import subprocess
import sys

import pandas as pd
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signal_helpers import default_sigint

import cures
from cures.policies import available, get_spec


def cures_cli(*args):
    return subprocess.run([sys.executable, "-m", "cures", *args], capture_output=True, text=True,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}, timeout=300)


def test_help_and_version():
    out = cures_cli("--help")
    assert out.returncode == 0 and "policies" in out.stdout
    out = cures_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"cures {cures.__version__}"


def test_policies_lists_every_policy_with_its_parameters():
    out = cures_cli("policies")
    assert out.returncode == 0, out.stderr
    for name in available():
        assert name in out.stdout
        assert get_spec(name).summary[:40] in out.stdout
    assert "tau=0.1" in out.stdout and "rollouts_per_step=8*prompts_per_step" in out.stdout


def test_policy_details():
    out = cures_cli("policies", "cures-released")
    assert out.returncode == 0
    assert "temperature_scale" in out.stdout and "per-rollout" in out.stdout


@pytest.mark.parametrize("args", [("policies", "nope"), ("policies", "--bogus")])
def test_bad_input_is_one_line_and_exit_2(args):
    out = cures_cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    if args[1] == "nope":
        assert out.stderr.strip().count("\n") == 0 and "unknown policy 'nope'" in out.stderr


def test_simulate_writes_everything_it_promises(tmp_path):
    import csv
    import json

    out = tmp_path / "sim"
    res = cures_cli("simulate", "--policy", "cures", "--n-prompts", "500", "--steps", "20", "--seeds", "2",
                    "--prompts-per-step", "16", "--set", "eval_every=5", "--set", "policy.tau=0.2", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "final heldout accuracy" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    for key in ("policy", "n_prompts", "steps", "seeds", "rollouts_total", "final_train_accuracy",
                "final_heldout_accuracy", "peak_heldout_accuracy", "peak_accuracy", "zero_variance_fraction",
                "first_step_zero_variance_fraction", "wall_seconds", "config"):
        assert key in summary
    assert summary["policy_params"]["tau"] == 0.2 and summary["rollouts_total"] == 20 * 128
    assert summary["accuracy_metric"] == "heldout_accuracy"
    assert summary["peak_accuracy"] == summary["peak_heldout_accuracy"]
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert len(rows) == 2 * 5 and {"rollouts", "step", "train_accuracy", "heldout_accuracy", "zero_variance_fraction",
                                   "posterior_error", "grad_norm", "grad_cosine"} <= set(rows[0])
    assert (out / "pass_rates.csv").is_file() and (out / "curves.png").stat().st_size > 10_000


def test_compare_writes_the_table_and_speedups(tmp_path):
    import json

    out = tmp_path / "cmp"
    res = cures_cli("compare", "--policies", "grpo,cures", "--n-prompts", "400", "--steps", "15", "--seeds", "2",
                    "--prompts-per-step", "16", "--out", str(out))
    assert res.returncode == 0, res.stderr
    result = json.loads((out / "comparison.json").read_text())
    assert [r["policy"] for r in result["policies"]] == ["grpo", "cures"]
    assert result["policies"][0]["speedup"] == 1.0
    assert result["policies"][1]["rollouts_used"] >= result["rollout_budget"]
    assert "| cures |" in (out / "comparison.md").read_text() and (out / "comparison.png").is_file()


def test_bench_prints_side_by_side_ratios(tmp_path):
    res = cures_cli("bench", "--sizes", "2000,20000", "--repeats", "2", "--out", str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr
    assert "medians of 2 alternating rounds" in res.stdout
    rate = {}  # (prompts, implementation) -> steps/s, read from the table
    for line in res.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 6 and cells[1] in ("engine", "vectorised", "reference"):
            rate[int(cells[0].replace(",", "")), cells[1]] = float(cells[2].replace(",", ""))
    assert len(rate) == 6 and all(v > 0 for v in rate.values())
    printed = dict(line.split(": ") for line in res.stdout.splitlines() if line.startswith(("speedup", "engine_")))
    for n in (2000, 20000):  # every printed ratio is the ratio of the printed rates, measured side by side
        assert float(printed[f"speedup_at_{n}"]) == pytest.approx(rate[n, "engine"] / rate[n, "reference"], rel=0.02)
        assert float(printed[f"speedup_over_vectorised_at_{n}"]) == pytest.approx(
            rate[n, "engine"] / rate[n, "vectorised"], rel=0.02)
    assert float(printed["engine_steps_per_second_ratio_largest_to_smallest"]) == pytest.approx(
        rate[20000, "engine"] / rate[2000, "engine"], rel=0.02)
    table = pd.read_csv(tmp_path / "b" / "bench.csv")  # --out: the printed table, unrounded, and its figure
    assert len(table) == 6 and {"which", "n_prompts", "seconds_per_step", "peak_rss_mb"} <= set(table.columns)
    for row in table.itertuples():
        assert 1.0 / row.seconds_per_step == pytest.approx(rate[row.n_prompts, row.which], rel=0.01, abs=0.5)
    saved = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert saved["ratios"]["speedup_at_2000"] == pytest.approx(float(printed["speedup_at_2000"]), abs=0.006)
    assert (tmp_path / "b" / "bench.png").stat().st_size > 0 and (tmp_path / "b" / "bench.parquet").is_file()


def test_bench_rounds_combine_to_medians():
    from cures.simulator.bench import combine_rounds

    rounds = [{"which": "engine", "n_prompts": 10, "seconds_per_step": t, "steps_per_second": 1 / t,
               "setup_seconds": s, "peak_rss_mb": m} for t, s, m in ((3.0, 0.1, 5.0), (1.0, 0.3, 9.0), (2.0, 0.2, 7.0))]
    r = combine_rounds(rounds)
    assert (r["seconds_per_step"], r["steps_per_second"], r["setup_seconds"], r["peak_rss_mb"]) == (2.0, 0.5, 0.2, 9.0)
    assert r["rounds_seconds_per_step"] == [3.0, 1.0, 2.0] and r["which"] == "engine"


def test_bench_versus_times_two_policies_alternately():
    res = cures_cli("bench", "--versus", "grpo", "--sizes", "2000", "--prompts-per-step", "16", "--rollouts-per-step",
                    "64",
                    "--repeats", "2")
    assert res.returncode == 0, res.stderr
    lines = {line.split(":")[0]: line for line in res.stdout.splitlines() if ":" in line}
    times_of = {}
    for name in ("cures", "grpo"):
        times = [float(t) for t in lines[name].split("per step")[1].split(",")]
        assert len(times) == 2 and all(t > 0 for t in times)
        times_of[name] = times
    ratio_line = res.stdout[res.stdout.index("cures / grpo per step: median"):]
    fastest = float(ratio_line.split("fastest repeats")[1].split()[0])
    assert fastest == pytest.approx(min(times_of["cures"]) / min(times_of["grpo"]), rel=0.02)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("simulate", "--policy", "nope"), "unknown policy 'nope'"),
        (("simulate", "--estimator", "ppo"), "estimator: input should be 'grpo'"),
        (("simulate", "--policy", "cures", "--prompts-per-step", "64", "--rollouts-per-step", "100"), "below "
         "prompts_per_step x n_min"),
        (("simulate", "--init-pass-rate", "beta:1"), "malformed part"),
        (("simulate", "--init-pass-rate", "/no/such/counts.csv"), "not found"),
        (("simulate", "--scenario", "nope"), "unknown scenario 'nope'"),
        (("simulate", "--set", "bogus=1"), "unknown setting 'bogus'"),
        (("simulate", "--set", "policy.tau=-1"), "tau must be"),
        (("simulate", "--n-prompts", "0"), "n_prompts: input should be greater than or equal to 1; got 0"),
        (("simulate", "--rollouts-per-step", "99999999999"), "rollouts_per_step=99,999,999,999 and"),
        (("compare", "--policies", "grpo,nope"), "unknown policy 'nope'"),
        (("bench", "--sizes", "ten"), "--sizes must be"),
        (("bench", "--sizes", "1000,0"), "--sizes must be prompt counts of at least 1; got '1000,0'"),
        (("bench", "--versus", "nope"), "unknown policy 'nope'"),
        (("bench", "--versus", "grpo", "--out", "x"), "--out writes the size table"),
        (("bench", "--versus", "cures-paper", "--prompts-per-step", "64", "--rollouts-per-step", "100"), "below "
         "prompts_per_step x n_min"),
    ],
)
def test_bad_simulation_input_is_one_line_and_exit_2(args, message):
    out = cures_cli(*args)
    assert out.returncode == 2, out.stdout
    assert message in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("command", [("simulate", "--n-prompts", "50", "--steps", "3"),
                                     ("compare", "--n-prompts", "50", "--steps", "3"), ("report", "--quick")])
@pytest.mark.parametrize("where", ["file", "under-file"])
def test_unusable_out_fails_before_any_work(tmp_path, command, where):
    afile = tmp_path / "taken"
    afile.write_text("x")
    out = afile if where == "file" else afile / "sub"
    res = cures_cli(*command, "--out", str(out))
    assert res.returncode == 2 and "--out" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and afile.read_text() == "x"


def test_concurrent_runs_into_one_out_never_mix(tmp_path):
    """Two simulations writing the same --out at once: the directory ends up wholly one run's (summary, curves and
    pass rates agree on the seed), and no staging folder is left behind."""
    import csv
    import json

    out = tmp_path / "shared"
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "cures", "simulate", "--n-prompts", "300", "--steps", "30",
                               "--seeds", "1", "--seed", str(seed), "--out", str(out)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for seed in (11, 22)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    summary = json.loads((out / "summary.json").read_text())
    with (out / "curves.csv").open() as fh:
        seeds = {row["seed"] for row in csv.DictReader(fh)}
    assert seeds == {str(summary["config"]["seed"])}
    assert not list(tmp_path.glob(".shared.*"))


def test_staged_outputs_leave_out_untouched_on_failure(tmp_path):
    from cures._io import staged_outputs

    out = tmp_path / "res"
    with staged_outputs(out, "summary.json") as stage:
        (stage / "summary.json").write_text("one")
        (stage / "data.csv").write_text("a")
    with pytest.raises(KeyboardInterrupt), staged_outputs(out, "summary.json") as stage:
        (stage / "data.csv").write_text("b")
        raise KeyboardInterrupt
    assert (out / "data.csv").read_text() == "a" and (out / "summary.json").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


@pytest.mark.parametrize("threads", ["1", "2"])
def test_ctrl_c_stops_a_multi_seed_run_promptly(tmp_path, threads):
    """SIGINT during a long two-seed simulation: exit 130 within a few seconds (0.2 s measured on 2 cores), one
    line on stderr, and no result files."""
    import time

    out = tmp_path / "res"
    # the same kernels compiled first (Ctrl-C waits for a kernel being compiled, as documented): the signal below
    # then lands in the compiled loops whatever the cache held
    warm = subprocess.run([sys.executable, "-m", "cures", "simulate", "--n-prompts", "200", "--steps", "2", "--seeds",
                           "2", "--threads", threads, "--out", str(tmp_path / "warm")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    assert warm.returncode == 0, warm.stderr
    proc = subprocess.Popen([sys.executable, "-m", "cures", "simulate", "--n-prompts", "20000", "--steps", "10000000",
                             "--seeds", "2", "--threads", threads, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
                            preexec_fn=default_sigint)
    try:
        time.sleep(6)  # past start-up, inside the compiled loops
        assert proc.poll() is None
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        proc.kill()  # never left running, whatever failed
    assert proc.returncode == 130 and time.perf_counter() - t0 < 5
    assert proc.stderr.read().strip() == "error: interrupted"
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("args", [("simulate", "--seeds", "1x"), ("compare", "--steps", "ten"),
                                  ("sweep", "--jobs", "two"), ("reconcile", "--n-prompts", "1.5"),
                                  ("report", "--mc-reps", "x"), ("bench", "--prompts-per-step", "y"),
                                  ("simulate", "--bogus"), ("compare", "--n-prompts"), ("policies", "a", "b")])
def test_usage_errors_are_one_line_naming_the_option(args):
    """Type errors, unknown options and missing values, found by the command-line parser itself, end in one line
    (not a framed block), exit 2."""
    out = cures_cli(*args)
    assert out.returncode == 2, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr, out.stderr
    assert args[1] in lines[0] or "unexpected extra argument" in lines[0].lower(), lines[0]


@pytest.mark.parametrize("text", ["/tmp/[/]x.toml", "/tmp/[red]x[/red].toml", "/tmp/:fire:.toml"])
def test_user_text_in_an_error_is_printed_as_typed(text):
    """Brackets and emoji codes in a value are not rich markup: "[/]" used to raise MarkupError (a traceback), and
    "[red]" vanished from the message."""
    out = cures_cli("simulate", "--scenario", text)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (f"error: unknown scenario '{text}': not one of default, paper-1.5b and no such "
                                  ".toml file")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=st.one_of(
    st.lists(st.sampled_from(["[", "]", "/", ":", "\\", "red", "bold", "fire", "link=x", " ", "=", "a"]), min_size=1,
             max_size=20).map("".join),  # markup and emoji syntax, densely
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=80)))
def test_fail_prints_any_message_verbatim_on_one_line(message, capsys):
    """`fail` (every command's bad-input exit) prints "error: " and the message unchanged, whatever it holds."""
    from cures.cli import fail

    with pytest.raises(typer.Exit) as exit_info:
        fail(message)
    assert exit_info.value.exit_code == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_styled_lines_keep_their_text():
    out = cures_cli("policies", "cures")
    assert out.returncode == 0 and out.stdout.startswith("cures: CurES: rho* sampling")
    out = cures_cli("scenarios")
    assert out.returncode == 0 and out.stdout.startswith("default: ")
