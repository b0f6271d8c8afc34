"""Simulation settings: one validated dataclass, named TOML scenarios, `key=value` overrides."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

SCENARIO_DIR = Path(__file__).parent / "scenarios"
ESTIMATORS = ("grpo", "drgrpo", "rloo", "reinforce++")
WEIGHTINGS = ("policy", "prompt", "rollout")
MODES = ("irt", "tabular")


@dataclass
class SimConfig:
    """The simulated world and the training loop (see the README's "Simulator" section for the equations)."""

    # population
    n_prompts: int = 10_000
    n_heldout: int = 2_000
    mode: str = "irt"  # "irt": p = sigmoid(a.theta - b), shared theta; "tabular": one logit per prompt
    dim: int = 8  # d, the skill dimensions
    init_pass_rate: str = "beta:0.6,0.9"  # see simulator.population.parse_pass_rate_spec
    unlearnable: float = 0.1  # share of prompts with a = 0 (no purchase)
    a_scale: float = 1.0  # median discrimination |a_i|
    a_spread: float = 0.5  # log-normal sigma of |a_i|
    edge_logit: float = 9.0  # logit of the point masses at 0 and 1
    # rollouts and updates
    sigma_correct: float = 1.0  # score noise scale of correct responses
    sigma_wrong: float = 2.0  # score noise scale of wrong responses
    estimator: str = "grpo"
    weighting: str = "policy"  # "prompt" (Eq. 16), "rollout" (token-mean), or the policy's own
    eps: float = 1e-4  # GRPO std epsilon (TRL)
    lr: float = 0.5
    clip: float = 0.0  # trust region: max ||delta theta|| per step (0: none)
    score_norms: bool = False  # report exact score statistics to the policy (Eq. 21 with measured norms)
    # schedule
    steps: int = 200
    batch_size: int = 64
    budget: int | None = None  # rollouts per step (None: the policy's default, 8 x batch_size)
    max_rollouts: int = 0  # stop a seed once it has used this many rollouts (0: run all steps)
    eval_every: int = 10
    seeds: int = 4
    seed: int = 0
    threads: int = 2
    hist_bins: int = 20
    policy_params: dict = field(default_factory=dict)

    def validate(self) -> SimConfig:
        def need(cond, msg):
            if not cond:
                raise ValueError(msg)

        for name in ("n_prompts", "dim", "steps", "batch_size", "eval_every", "seeds", "threads", "hist_bins"):
            v = getattr(self, name)
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 1
            need(ok, f"{name} must be an integer >= 1; got {v!r}")
        need(isinstance(self.n_heldout, int) and self.n_heldout >= 0, f"n_heldout must be >= 0; got {self.n_heldout}")
        need(self.mode in MODES, f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        need(self.estimator in ESTIMATORS, f"unknown estimator {self.estimator!r}; choose from {', '.join(ESTIMATORS)}")
        need(self.weighting in WEIGHTINGS, f"weighting must be one of {', '.join(WEIGHTINGS)}; got {self.weighting!r}")
        need(0.0 <= self.unlearnable <= 1.0, f"unlearnable must lie in [0, 1]; got {self.unlearnable}")
        for name in ("a_scale", "lr", "edge_logit"):
            v = getattr(self, name)
            need(math.isfinite(v) and v > 0, f"{name} must be > 0; got {v}")
        for name in ("a_spread", "sigma_correct", "sigma_wrong", "eps", "clip"):
            v = getattr(self, name)
            need(math.isfinite(v) and v >= 0, f"{name} must be >= 0; got {v}")
        need(self.budget is None or (isinstance(self.budget, int) and self.budget >= 1),
             f"budget must be an integer >= 1; got {self.budget!r}")
        need(isinstance(self.max_rollouts, int) and self.max_rollouts >= 0,
             f"max_rollouts must be an integer >= 0; got {self.max_rollouts!r}")
        need(isinstance(self.policy_params, dict), "policy_params must be a table of policy parameters")
        from simulator.population import parse_pass_rate_spec

        parse_pass_rate_spec(self.init_pass_rate)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(SimConfig)}


def available_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def load_scenario(name_or_path: str | None) -> dict:
    """Settings of a named scenario (`simulator/scenarios/NAME.toml`) or of a TOML file."""
    if name_or_path is None:
        name_or_path = "default"
    named = SCENARIO_DIR / f"{name_or_path}.toml"
    path = named if named.is_file() else Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"unknown scenario {name_or_path!r}: not one of {', '.join(available_scenarios())} and not a "
                         ".toml file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"scenario {path} is not valid TOML: {exc}") from None
    data.pop("description", None)
    policy = data.pop("policy", {})
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValueError(f"scenario {path} has unknown settings {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    if policy:
        data["policy_params"] = dict(policy)
    return data


def _coerce(name: str, text: str):
    """Parse an override's text according to the setting's default type."""
    default = FIELDS[name].default
    if name == "budget":
        return None if text.lower() in ("none", "") else int(text)
    if isinstance(default, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{name} must be true or false; got {text!r}")
        return text.lower() in ("true", "1")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
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
            continue
        if key not in FIELDS or key == "policy_params":
            raise ValueError(f"unknown setting {key!r}; allowed: {', '.join(k for k in FIELDS if k != 'policy_params')}"
                             ", or policy.PARAM")
        try:
            settings[key] = _coerce(key, text)
        except ValueError as exc:
            raise ValueError(f"bad value for {key}: {exc}") from None
    return settings, policy


def parse_value(text: str):
    """A `--set` value's text as int, float, bool, None or the string itself."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() == "none":
        return None
    return text


def build_config(scenario: str | None = None, overrides: dict | None = None, policy_overrides: dict | None = None
                 ) -> SimConfig:
    """Defaults < scenario < explicit overrides, validated."""
    data = load_scenario(scenario)
    data.update(overrides or {})
    cfg = SimConfig(**data)
    cfg.policy_params = {**cfg.policy_params, **(policy_overrides or {})}
    return cfg.validate()
