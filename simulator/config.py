"""Simulation settings: one dataclass typed with pydantic (the schema every scenario TOML, `--set` value and command
line option goes through), named TOML scenarios, `key=value` overrides."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from cures.renamed import refuse_renamed, refuse_renamed_value

SCENARIO_DIR = Path(__file__).parent / "scenarios"
ESTIMATORS = ("grpo", "dr_grpo", "rloo", "reinforce++")
WEIGHTINGS = ("policy", "prompt", "rollout")
MODES = ("irt", "tabular")

# Types of the schema: integers must be integers (not 1.5, not "3", not true), numbers finite numbers, flags booleans.
Count = Annotated[int, Field(strict=True, ge=1)]
NonNegCount = Annotated[int, Field(strict=True, ge=0)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Flag = Annotated[bool, Field(strict=True)]


@dataclass
class SimConfig:
    """The simulated world and the training loop (see the README's "Simulator" section for the equations)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    # population
    n_prompts: Count = 10_000
    n_heldout: NonNegCount = 2_000
    mode: Literal["irt", "tabular"] = "irt"  # "irt": p = sigmoid(a.theta - b), shared theta; "tabular": own logits
    dim: Annotated[int, Field(strict=True, ge=1, le=4096)] = 8  # d, the skill dimensions
    init_pass_rate: Annotated[str, Field(strict=True)] = "beta:0.6,0.9"  # population.parse_pass_rate_spec
    unlearnable: Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)] = 0.1  # share with a = 0
    a_scale: Annotated[float, Field(strict=True, gt=0, le=1e3, allow_inf_nan=False)] = 1.0  # median |a_i|
    a_spread: Annotated[float, Field(strict=True, ge=0, le=5, allow_inf_nan=False)] = 0.5  # log-normal sigma of |a_i|
    edge_logit: Annotated[float, Field(strict=True, gt=0, le=50, allow_inf_nan=False)] = 9.0  # point masses' logit
    # rollouts and updates
    sigma_correct: NonNegative = 1.0  # score noise scale of correct responses
    sigma_wrong: NonNegative = 2.0  # score noise scale of wrong responses
    estimator: Literal["grpo", "dr_grpo", "rloo", "reinforce++"] = "grpo"
    weighting: Literal["policy", "prompt", "rollout"] = "policy"  # "prompt" (Eq. 16), "rollout" (token-mean)
    eps: Positive = 1e-4  # GRPO std epsilon (TRL)
    lr: Positive = 0.5
    clip: NonNegative = 0.0  # trust region: max ||delta theta|| per step (0: none)
    score_norms: Flag = False  # report exact score statistics to the policy (Eq. 21 with measured norms)
    # schedule
    steps: Count = 200
    prompts_per_step: Count = 64
    rollouts_per_step: Annotated[int | None, Field(strict=True,
                                                   ge=1)] = None  # rollouts per step (None: policy default)
    passes: Annotated[float | None, Field(strict=True, gt=0, le=1e6, allow_inf_nan=False)] = None  # passes over
    # the data; when given, steps = ceil(passes x n_prompts / prompts_per_step) (a later layer's steps replaces it)
    max_rollouts: NonNegCount = 0  # stop a seed once it has used this many rollouts (0: run all steps)
    train_cost: NonNegative = 1.0  # compute = generated + train_cost x trained rollouts (see TRAIN_COST_NOTE)
    max_compute: NonNegative = 0.0  # stop a seed once it has spent this much compute (0: no cap)
    eval_every: Count = 10
    seeds: Count = 4
    seed: NonNegCount = 0
    threads: Annotated[int, Field(strict=True, ge=1, le=1024)] = 2
    hist_bins: Annotated[int, Field(strict=True, ge=1, le=10_000)] = 20
    policy_params: Annotated[dict[str, Any], Field(strict=True)] = field(default_factory=dict)

    def validate(self, source: dict | None = None) -> SimConfig:
        """This config checked against the schema, the pass-rate spec, the policy parameters' names and the memory
        it needs; ValueError names the setting and, through `source` (setting -> where it was given), its origin."""
        refuse_renamed_value("estimator", self.estimator, (source or {}).get("estimator", ""))
        if isinstance(self.policy_params, dict):
            refuse_renamed(self.policy_params, (source or {}).get("policy_params", ""), prefix="policy.", moved=True)
        try:
            TypeAdapter(SimConfig).validate_python(dataclasses.asdict(self))
        except ValidationError as exc:
            raise ValueError(_one_line(exc, source or {})) from None
        for key in ("rollouts_per_step", "prompts_per_step"):
            if key in self.policy_params:
                raise ValueError(f"policy.{key}: set the top-level {key} (--{key.replace('_', '-')}) instead")
        from cures.simulator.population import parse_pass_rate_spec

        parse_pass_rate_spec(self.init_pass_rate)
        _check_memory(self)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _one_line(exc: ValidationError, source: dict) -> str:
    """The first schema error as one line: where it was given, the setting, the problem and the value."""
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    top = str(err["loc"][0]) if err["loc"] else ""
    where = source.get(top, "")
    msg = err["msg"][0].lower() + err["msg"][1:] if err["msg"] else "invalid"
    if err["type"] == "unexpected_keyword_argument":
        return f"{where}unknown setting {key!r}; allowed: {', '.join(FIELDS)}"
    return f"{where}{key}: {msg}; got {err['input']!r}"


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def estimated_bytes(cfg: SimConfig) -> int:
    """Peak memory of a run, estimated from its array sizes: per prompt the population (a: d floats, b) and the
    policy state (about 20 numbers), per slot the step buffer, for as many seeds as run at once, plus 300 MB of
    interpreter and compiled code."""
    per_prompt = 8 * (cfg.dim + 2) * 2 + 8 * 24
    per_slot = 8 * 12
    rollouts_per_step = cfg.rollouts_per_step or 8 * cfg.prompts_per_step
    slots = cfg.prompts_per_step + rollouts_per_step + cfg.n_prompts
    per_seed = per_prompt * (cfg.n_prompts + cfg.n_heldout) + per_slot * slots
    return min(cfg.seeds, cfg.threads) * per_seed + 300 * 2**20


def _check_memory(cfg: SimConfig) -> None:
    need, have = estimated_bytes(cfg), _available_bytes()
    if need > have:
        rollouts_per_step = cfg.rollouts_per_step or 8 * cfg.prompts_per_step
        raise ValueError(f"n_prompts={cfg.n_prompts:,}, prompts_per_step={cfg.prompts_per_step:,}, "
                         f"rollouts_per_step={rollouts_per_step:,} and "
                         f"{min(cfg.seeds, cfg.threads)} seeds at once need about {need / 2**30:.1f} GB; "
                         f"{have / 2**30:.1f} GB is available (lower --n-prompts, --prompts-per-step, "
                         f"--rollouts-per-step or --threads)")


FIELDS = {f.name: f for f in dataclasses.fields(SimConfig)}

TRAIN_COST_NOTE = (
    "train_cost = 1: a trained rollout costs as much as a generated one. In FLOPs a training pass (forward and "
    "backward, about 3x a forward) costs more than generation (one forward per token), but generation decodes one "
    "token at a time and is memory-bound, so in wall time the two are of the same order in published GRPO profiles; "
    "set it from your own step-time profile (e.g. 0.5 when generation takes two thirds of a step that trains "
    "everything it generates).")


def available_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | None) -> dict:
    """Settings of a named scenario (`simulator/scenarios/NAME.toml`) or of a TOML file."""
    if name_or_path is None:
        name_or_path = "default"
    named = SCENARIO_DIR / f"{name_or_path}.toml"
    path = named if named.is_file() else Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"unknown scenario {name_or_path!r}: not one of {', '.join(available_scenarios())} and no "
                         "such .toml file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"scenario {path} is not valid TOML: {exc}") from None
    data.pop("description", None)
    policy = data.pop("policy", {})
    if not isinstance(policy, dict):
        raise ValueError(f"scenario {path}: policy must be a table of policy parameters ([policy]); got {policy!r}")
    refuse_renamed(data, f"scenario {path}: ")
    refuse_renamed(policy, f"scenario {path}: ", prefix="policy.", moved=True)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"scenario {path} has unknown settings {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    if policy:
        data["policy_params"] = dict(policy)
    return data


def parse_value(text: str):
    """A `--set` value as a TOML value (`3`, `1.5`, `true`, `"text"`, `[1, 2]`, `{a = 1}`), a bare word as a string,
    `none` as None; the schema then checks its type."""
    if text.strip().lower() == "none":
        return None
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(pairs: list[str]) -> tuple[dict, dict]:
    """`key=value` strings into (simulation settings, policy parameters); `policy.KEY=value` sets a policy
    parameter. Unknown keys raise ValueError listing the allowed ones."""
    settings, policy = {}, {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value; got {pair!r}")
        key, text = (s.strip() for s in pair.split("=", 1))
        if key.startswith("policy."):
            policy[key[7:]] = parse_value(text)
        elif key not in FIELDS or key == "policy_params":
            refuse_renamed([key], "--set: ")
            raise ValueError(f"--set: unknown setting {key!r}; allowed: "
                             f"{', '.join(k for k in FIELDS if k != 'policy_params')}, or policy.PARAM")
        else:
            settings[key] = parse_value(text)
    return settings, policy


def build_config(scenario: str | None = None, overrides: dict | None = None, policy_overrides: dict | None = None
                 ) -> SimConfig:
    """Defaults < scenario < explicit overrides, validated by the schema (errors name the setting and where it was
    given). `passes` and `steps` are two ways to say one thing: the later layer's wins, both in one layer is an
    error."""
    data = load_scenario(scenario)
    overrides = dict(overrides or {})
    for layer, where in ((data, f"scenario {scenario or 'default'}"), (overrides, "the command line")):
        if layer.get("passes") is not None and layer.get("steps") is not None:
            raise ValueError(f"{where} sets both steps and passes; give one (passes = steps x prompts_per_step / "
                             f"n_prompts)")
    if overrides.get("steps") is not None:
        data.pop("passes", None)
    if overrides.get("passes") is not None:
        data.pop("steps", None)
    source = {k: f"scenario {scenario or 'default'}: " for k in data}
    source.update({k: "" for k in overrides})
    data.update(overrides)
    refuse_renamed(data)
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}; allowed: {', '.join(FIELDS)}")
    cfg = SimConfig(**data)
    if not isinstance(cfg.policy_params, dict):
        return cfg.validate(source)  # the schema names the problem
    cfg.policy_params = {**cfg.policy_params, **(policy_overrides or {})}
    cfg.validate(source)
    if cfg.passes is not None:
        cfg.steps = max(1, math.ceil(cfg.passes * cfg.n_prompts / cfg.prompts_per_step))
        cfg.validate(source)
    return cfg
