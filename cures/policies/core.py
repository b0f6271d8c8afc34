"""The uniform Python interface to the compiled policies: validated parameters, explicit state, plan/observe.

    policy = make_policy("cures", prompts_per_step=64, rollouts_per_step=512)
    state = policy.init(n_prompts=10_000, seed=0)
    while True:                                   # one training step
        plan = policy.plan(state)                 # generate these ...
        successes = run_rollouts(plan)            # ... (caller: n_rollouts[i] rollouts of prompt_ids[i])
        if policy.observe(state, successes):      # ... tell me the rewards, then I decide
            break
    batch = policy.training_batch(state)          # which generated groups to train on

`plan` and `observe` update `state` in place (use `state.copy()` to branch) and run the same compiled functions
(`cures.policies.dispatch`) that the simulator calls inside its own compiled loop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cures._io import atomic_save_npz, load_npz
from cures.policies.dispatch import observe_round, plan_round, specialised
from cures.policies.layout import (
    EMPTY_ARRAYS,
    OPTIONAL_ARRAYS,
    STATE_VARS,
    STEP_VARS,
    State,
    StepBuffer,
    copy_vars,
    new_vars,
    vars_array,
    vars_from_array,
)
from cures.policies.spec import INIT_ONLY, PolicySpec, get_spec
from cures.posterior import BetaPosterior, successes_from_rewards
from cures.renamed import refuse_renamed
from cures.sumtree import copy_tree, leaves, tree_height

STATE_FORMAT = "cures.PolicyState"
STATE_VERSION = 2  # 2: named scalars (`vars` records) and per-policy kernel parameters; 1: integer registers

# ----------------------------------------------------------------------------------------------------------------
# Plans, batches and state
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One generation round: give `n_rollouts[i]` rollouts to prompt `prompt_ids[i]` (slot i)."""

    step: int
    round: int
    purpose: str  # "train": candidates for training; "screen": pre-rollouts that only inform the policy
    prompt_ids: np.ndarray
    n_rollouts: np.ndarray

    @property
    def total(self) -> int:
        return int(self.n_rollouts.sum())

    def rollout_prompt_ids(self) -> np.ndarray:
        """The prompt of every rollout, slots in order, each repeated n times."""
        return np.repeat(self.prompt_ids, self.n_rollouts)

    def rollout_slots(self) -> np.ndarray:
        """The slot (position in the plan) of every rollout: the key of its advantage group."""
        return np.repeat(np.arange(self.prompt_ids.size), self.n_rollouts)


@dataclass(frozen=True)
class TrainingBatch:
    """Every slot generated in the finished step, and the training group of each (-1: not trained).

    A group trains on `kept_successes[i]` correct and `kept_failures[i]` wrong rollouts of slot i (the first-generated
    of each class; the whole slot unless the policy kept part of it; 0 for an untrained slot), and its advantages use
    the statistics of `baseline[g]` = (successes, rollouts) when that has rollouts, else of its trained rollouts.
    A slot with `source[i] >= 0` was not generated in this step: it re-uses the rollouts of the slot with that id."""

    prompt_ids: np.ndarray
    n_rollouts: np.ndarray
    successes: np.ndarray
    group: np.ndarray
    round: np.ndarray
    kept_successes: np.ndarray
    kept_failures: np.ndarray
    baseline: np.ndarray  # float64[n_groups, 2]
    slot_id: np.ndarray  # the id of each generated slot (-1 for a slot that re-uses earlier rollouts)
    source: np.ndarray  # the id of the slot whose rollouts a slot re-uses (-1: generated in this step)

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if self.group.size else 0

    @property
    def rollouts_generated(self) -> int:
        return int(self.n_rollouts[self.source < 0].sum())

    @property
    def rollouts_trained(self) -> int:
        return int(self.kept_successes.sum() + self.kept_failures.sum())


@dataclass
class PolicyState:
    """Everything a policy remembers: kernel parameters, arrays, the current step's slots and its RNG."""

    policy: str
    params: dict
    kernel: tuple  # the policy's kernel parameters (PolicySpec.kernel_params)
    arrays: State
    step: StepBuffer
    rng: np.random.Generator

    @property
    def n_prompts(self) -> int:
        return self.arrays.alpha.shape[0]

    def kernel_call(self, dispatcher):
        """`dispatcher(P, S, B, rng)` compiled for this state's types (memoised), as a call without arguments."""
        entries = self.__dict__.setdefault("_entries", {})
        if dispatcher not in entries:
            entries[dispatcher] = specialised(dispatcher, self.kernel, self.arrays, self.step, self.rng)
        fn = entries[dispatcher]
        return lambda: fn(self.kernel, self.arrays, self.step, self.rng)

    @property
    def steps_done(self) -> int:
        return int(self.arrays.vars["step"])

    @property
    def rollouts_total(self) -> int:
        """Every rollout planned so far, screening and refills included."""
        return int(self.arrays.vars["rollouts"])

    @property
    def awaiting_observation(self) -> bool:
        return bool(self.step.vars["awaiting"])

    def held_slot_ids(self) -> np.ndarray:
        """Ids of the slots whose rollouts the policy may still train on in a later step (the caller keeps them)."""
        ids = self.arrays.held[:, 0]
        return np.sort(ids[ids >= 0])

    def sampling_ess(self) -> float | None:
        """Kish effective sample size (sum w)^2 / sum w^2 of the weights rho* (Eq. 14) currently draws prompts with;
        None for policies that do not sample from rho*."""
        if self.arrays.tree.size == 0:
            return None
        w = leaves(self.arrays.tree, int(self.arrays.vars["tree_height"]), self.n_prompts)
        total = w.sum()
        return float(total**2 / (w**2).sum()) if total > 0 else None

    def posterior(self) -> BetaPosterior:
        """A copy of the pass-rate posterior as a `BetaPosterior`."""
        post = BetaPosterior(self.n_prompts, prior=self.params.get("prior", (1.0, 1.0)),
                             decay=getattr(self.kernel, "decay", 1.0))
        for name in ("alpha", "beta", "alpha0", "beta0"):
            getattr(post, name)[:] = getattr(self.arrays, name)
        return post

    def posterior_mean(self) -> np.ndarray:
        return self.posterior().mean()

    def copy(self) -> PolicyState:
        return PolicyState(self.policy, copy.deepcopy(self.params), self.kernel, _copied(self.arrays),
                           _copied(self.step), copy.deepcopy(self.rng))

    def save(self, path) -> Path:
        """Write the whole state to one versioned .npz file (no pickle), atomically."""
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params.items()}
        meta = {
            "format": STATE_FORMAT, "version": STATE_VERSION, "policy": self.policy, "params": params,
            "kernel": self.kernel._asdict(), "rng": _rng_state(self.rng),
        }
        arrays = {f"{prefix}.{k}": (vars_array(v) if k == "vars" else v)
                  for prefix, part in (("state", self.arrays), ("step", self.step)) for k, v in part._asdict().items()}
        return atomic_save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path) -> PolicyState:
        """Read a state written by `save`. Every metadata key, array shape, dtype and value range is checked against
        a fresh state of the same policy and size, so a damaged file is a ValueError naming the file and the problem,
        never a crash inside compiled code. Files of another format version are refused with their version."""
        meta, arrays = load_npz(path, STATE_FORMAT, (STATE_VERSION,))
        try:
            return _checked_state(meta, arrays)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _copied(part):
    """A deep copy of a State or StepBuffer (arrays and vars record; the sum tree placed as `new_tree` places it)."""
    def copied(name, a):
        if isinstance(a, np.record):
            return copy_vars(a)
        return copy_tree(a) if name == "tree" else a.copy()

    return type(part)(**{name: copied(name, a) for name, a in part._asdict().items()})


def _checked_state(meta: dict, arrays: dict) -> PolicyState:
    missing = {"policy", "params", "kernel", "rng"} - set(meta)
    if missing:
        raise ValueError(f"metadata lacks {', '.join(sorted(missing))}")
    if not isinstance(meta["policy"], str) or not isinstance(meta["params"], dict):
        raise ValueError("metadata 'policy' must be a name and 'params' a mapping")
    spec = get_spec(meta["policy"])
    params = {k: (tuple(v) if isinstance(spec.defaults().get(k), tuple) and isinstance(v, list) else v)
              for k, v in meta["params"].items()}
    policy = make_policy(meta["policy"], **params)
    alpha = arrays.get("state.alpha")
    if alpha is None or alpha.ndim != 1 or alpha.size < 1:
        raise ValueError("array state.alpha is missing or not a non-empty vector")
    ref = policy.init(alpha.size, seed=0)  # the layout this policy has for this many prompts
    kernel, known = meta["kernel"], ref.kernel._asdict()
    if not isinstance(kernel, dict) or set(kernel) != set(known):
        fields = set(kernel) if isinstance(kernel, dict) else set()
        raise ValueError(f"kernel parameters differ from this version's (missing: {sorted(set(known) - fields)}, "
                         f"unknown: {sorted(fields - set(known))})")
    bad = [f for f, v in known.items() if kernel[f] != v]
    if bad:
        raise ValueError(f"kernel parameters {', '.join(bad)} do not follow from the policy's parameters")
    loaded = {}
    for prefix, template in (("state", ref.arrays), ("step", ref.step)):
        for name, want in template._asdict().items():
            key = f"{prefix}.{name}"
            got = arrays.get(key)
            if got is None:
                raise ValueError(f"array {key} is missing")
            if name == "vars":
                want = vars_array(want)
            if got.dtype.descr != want.dtype.descr or got.shape != want.shape:
                raise ValueError(f"array {key} has dtype {got.dtype} and shape {got.shape}; expected {want.dtype} "
                                 f"and {want.shape}")
            if name == "vars":
                loaded[key] = vars_from_array(got)
            else:  # into the fresh state's array, which has the layout this version gives it (the sum tree's placement)
                np.copyto(want, got)
                loaded[key] = want
    unknown = set(arrays) - set(loaded)
    if unknown:
        raise ValueError(f"unknown arrays {', '.join(sorted(unknown))}")
    S = State(**{f: loaded[f"state.{f}"] for f in State._fields})
    B = StepBuffer(**{f: loaded[f"step.{f}"] for f in StepBuffer._fields})
    _check_ranges(S, B, ref)
    try:
        rng = _rng_from_state(meta["rng"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"metadata 'rng' is not a PCG64 state ({exc})") from None
    return PolicyState(meta["policy"], dict(policy.params), ref.kernel, S, B, rng)


def _check_ranges(S: State, B: StepBuffer, ref: PolicyState) -> None:
    """Values the compiled kernels index with or divide by must lie where a real run can put them."""
    n, cap = S.alpha.size, B.prompt.size

    def need(ok, what):
        if not ok:
            raise ValueError(what)

    for name in ("alpha", "beta", "alpha0", "beta0", "sigma", "weight", "tree", "last"):
        a = getattr(S, name)
        need(np.isfinite(a).all() and (a >= 0).all(), f"state.{name} must be finite and >= 0")
    need((S.n_static >= 0).all() and (S.streak >= 0).all() and (S.counts >= 0).all(), "state counts must be >= 0")
    need(np.isfinite(S.latent).all() and np.isfinite(S.features).all(), "state.latent and features must be finite")
    need(np.array_equal(np.sort(S.order), np.arange(n)), "state.order must be a permutation of the prompts")
    need(((S.queue >= 0) & (S.queue < n)).all(), "state.queue holds prompt ids outside 0..n-1")
    for part, rec in (("state", S.vars), ("step", B.vars)):
        for name in rec.dtype.names:
            v = rec[name]
            need(np.isfinite(v) and (v >= 0 or name == "subset"), f"{part}.vars.{name} must be finite and >= 0")
    v, r = S.vars, ref.arrays.vars
    need(v.n_subsets == r.n_subsets and v.tree_height == r.tree_height,
         "state.vars disagrees with the policy's subsets or sum-tree height")
    need(-1 <= v.subset < v.n_subsets, "state.vars.subset out of range")
    need(v.cursor <= n and v.queue_len <= n, "state.vars cursor or queue length exceeds the prompts")
    b = B.vars
    need(b.n_slots <= cap and b.round_start <= b.n_slots and b.n_groups <= b.n_slots,
         "step.vars slot or group counters out of range")
    need((B.group[: b.n_slots] < b.n_groups).all(), "step.group holds groups beyond step.vars.n_groups")
    need(not (b.done and b.awaiting), "step.vars says the step is both finished and awaiting an observation")
    made = S.vars.slots_made
    need(((B.slot_id >= -1) & (B.slot_id < made)).all() and ((B.source >= -1) & (B.source < made)).all()
         and ((S.held[:, 0] >= -1) & (S.held[:, 0] < made)).all(), "slot ids out of range")
    held = S.held[S.held[:, 0] >= 0]
    need((held[:, 1] >= 0).all() and (held[:, 1] <= held[:, 2]).all() and (held[:, 3] >= 0).all(),
         "state.held must hold successes <= rollouts and a step >= 0")
    need(((B.prompt >= 0) & (B.prompt < n)).all(), "step.prompt holds prompt ids outside 0..n-1")
    need((B.n >= 0).all() and (B.group >= -1).all() and (B.round >= 0).all(), "step counts must be >= 0")
    whole = B.keep[:, 0] < 0
    need((B.keep[whole] == -1).all() and (B.keep[~whole, 0] <= B.succ[~whole]).all()
         and (B.keep[~whole, 1] >= 0).all() and (B.keep[~whole, 1] <= (B.n - B.succ)[~whole]).all(),
         "step.keep must be -1 or within each slot's successes and failures")
    need(np.isfinite(B.baseline).all() and (B.baseline >= 0).all() and (B.baseline[:, 0] <= B.baseline[:, 1]).all(),
         "step.baseline must hold successes <= rollouts, both >= 0")
    need(np.isfinite(B.succ).all() and (B.succ >= 0).all() and (B.succ <= B.n).all(),
         "step.succ must lie in 0..n_rollouts")
    need(not (np.isfinite(B.score) & (B.score < 0)).any() and not np.isinf(B.score).any(),
         "step.score must be >= 0 or NaN")


def _rng_state(rng: np.random.Generator) -> dict:
    state = rng.bit_generator.state
    return {"bit_generator": state["bit_generator"], "state": {k: int(v) for k, v in state["state"].items()},
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}


def _rng_from_state(state: dict) -> np.random.Generator:
    if state["bit_generator"] != "PCG64":
        raise ValueError(f"unsupported bit generator {state['bit_generator']!r} in state file")
    bg = np.random.PCG64()
    bg.state = state
    return np.random.Generator(bg)


def make_policy(name: str, **params) -> Policy:
    """Build a policy by name; unknown names, unknown parameters or bad values raise ValueError."""
    spec = get_spec(name)
    allowed = {p.name: p for p in spec.params}
    refuse_renamed(set(params) - set(allowed), f"policy {name!r}: ")
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"policy {name!r} has no parameter {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
        )
    values = {}
    for p in spec.params:
        try:
            values[p.name] = p.check(p.name, params.get(p.name, p.default))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return Policy(spec, values)


def make_policy_for_budget(name: str, prompts_per_step: int | None = None, rollouts_per_step: int | None = None,
                           **params) -> Policy:
    """`make_policy` with the prompts and rollouts of a step applied where the policy has such parameters.

    A budgeted policy gets `rollouts_per_step` itself. Otherwise, with GRPO's group size n = max(2, rollouts_per_step //
    prompts_per_step), a policy with `PolicySpec.group_size_params` gets those parameters (PODS generates 4n and trains
    n; Pilot-Commit splits n into a 25 % pilot and a commit), unless `params` sets any of them; a fixed-n policy
    (GRPO-style groups) gets n; a policy with none of these (e.g. `gvm`, `cures-released`, which size their steps
    themselves) ignores `rollouts_per_step`. Explicit `params` win."""
    spec = get_spec(name)
    names = {p.name for p in spec.params}
    given = {}
    if prompts_per_step is not None and "prompts_per_step" in names:
        given["prompts_per_step"] = prompts_per_step
    if rollouts_per_step is not None and "rollouts_per_step" in names:
        given["rollouts_per_step"] = rollouts_per_step
    elif rollouts_per_step is not None:
        n = max(2, rollouts_per_step // (prompts_per_step or spec.defaults()["prompts_per_step"]))
        by_group = spec.group_size_params(n) if spec.group_size_params else None
        if by_group is not None and not by_group.keys() & params.keys():
            given.update(by_group)
        elif "n" in names:
            given["n"] = n
    given.update(params)
    return make_policy(name, **given)


# ----------------------------------------------------------------------------------------------------------------
# The policy object
# ----------------------------------------------------------------------------------------------------------------


class Policy:
    """A validated policy configuration. Create with `make_policy`; all mutable state lives in `PolicyState`."""

    def __init__(self, spec: PolicySpec, params: dict):
        self.spec = spec
        self.params = params

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"make_policy({self.name!r}, {args})"

    # -- construction ----------------------------------------------------------------------------------------
    def resolved_params(self, n_prompts: int) -> dict:
        """The public parameters with defaults filled (`PolicySpec.resolve`) and checked against `n_prompts`."""
        v = dict(self.params)
        if "prompts_per_step" in v and v.get("rollouts_per_step", 0) is None:
            v["rollouts_per_step"] = 8 * v["prompts_per_step"]
        if self.spec.resolve is not None:
            v = self.spec.resolve(v, n_prompts)
        if self.spec.check is not None:
            try:
                self.spec.check(v, n_prompts)
            except ValueError as exc:
                raise ValueError(f"{self.name}: {exc}") from None
        return v

    def kernel_params(self, n_prompts: int):
        """The compiled kernels' parameters (`PolicySpec.kernel_params`) for a dataset of `n_prompts` prompts."""
        v = {**self.resolved_params(n_prompts), **self.spec.fixed}
        cls = self.spec.kernel_params
        stray = sorted(set(v) - set(cls._fields) - set(INIT_ONLY) - set(self.spec.load_params))
        if stray:
            raise AssertionError(f"parameters {stray} of {self.name} reach no field of {cls.__name__}")
        return cls(**{k: v[k] for k in cls._fields if k in v})

    def _loaded_arrays(self, values: dict, n_prompts: int) -> dict:
        """Arrays the spec supplies from its parameters (`PolicySpec.load`), checked: declared, one finite float64
        row per prompt."""
        if self.spec.load is None:
            return {}
        try:
            arrays = self.spec.load(values, n_prompts)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None
        for k, a in arrays.items():
            fits = a.dtype == np.float64 and a.shape[0] == n_prompts and np.isfinite(a).all()
            if k not in self.spec.arrays or not fits:
                raise AssertionError(f"{self.name}: loaded array {k!r} is undeclared or not finite float64 rows")
        return {k: np.ascontiguousarray(a) for k, a in arrays.items()}

    def init(self, n_prompts: int, seed: int = 0, posterior: BetaPosterior | None = None) -> PolicyState:
        """Fresh state for `n_prompts` prompts; `posterior` optionally supplies starting counts (e.g. offline)."""
        if isinstance(n_prompts, bool) or int(n_prompts) != n_prompts or n_prompts < 1:
            raise ValueError(f"n_prompts must be an integer >= 1; got {n_prompts!r}")
        n = int(n_prompts)
        P = self.kernel_params(n)
        values = self.resolved_params(n)
        subsets = min(values.get("subsets", 1), n)
        prior_alpha, prior_beta = values.get("prior", (1.0, 1.0))
        rng = np.random.default_rng(seed)
        if posterior is not None and posterior.n_prompts != n:
            raise ValueError(f"posterior covers {posterior.n_prompts} prompts, not {n}")
        alpha0 = np.full(n, prior_alpha) if posterior is None else posterior.alpha0.copy()
        beta0 = np.full(n, prior_beta) if posterior is None else posterior.beta0.copy()
        spec = self.spec
        loaded = self._loaded_arrays(values, n)
        state_vars = new_vars(
            STATE_VARS + spec.state_vars, n_subsets=subsets, subset=-1, need_subset=True,
            tree_height=tree_height(n) if "tree" in spec.arrays else 0, **(spec.init_vars(P) if spec.init_vars else {}),
        )
        arrays = State(
            alpha=alpha0.copy() if posterior is None else posterior.alpha.copy(),
            beta=beta0.copy() if posterior is None else posterior.beta.copy(),
            alpha0=alpha0, beta0=beta0,
            order=rng.permutation(n).astype(np.int64), queue=np.zeros(n, np.int64), mark=np.zeros(n, np.uint8),
            **{k: (make(n) if k in spec.arrays else EMPTY_ARRAYS[k].copy()) for k, make in OPTIONAL_ARRAYS.items()
               if k not in loaded},
            **loaded,
            vars=state_vars,
        )
        cap = spec.capacity(P, -(-n // subsets))
        step = StepBuffer(
            prompt=np.zeros(cap, np.int64), n=np.zeros(cap, np.int64), succ=np.zeros(cap),
            score=np.full((cap, 3), np.nan), group=np.full(cap, -1, np.int64), round=np.zeros(cap, np.int64),
            keep=np.full((cap, 2), -1, np.int64), baseline=np.zeros((cap, 2)), slot_id=np.full(cap, -1, np.int64),
            source=np.full(cap, -1, np.int64),
            vars=new_vars(STEP_VARS + spec.step_vars, done=True),
        )
        return PolicyState(self.name, dict(self.params), P, arrays, step, rng)

    # -- the step loop ---------------------------------------------------------------------------------------
    def _check_state(self, state: PolicyState) -> None:
        if state.policy != self.name or state.params != self.params:
            raise ValueError(f"this state belongs to {state.policy!r} with other parameters, not to {self!r}")

    def plan(self, state: PolicyState) -> Plan:
        """The next round to generate (the first round of a new step once the previous step is done)."""
        self._check_state(state)
        if state.awaiting_observation:
            raise ValueError("the last plan has not been observed yet; call observe() first")
        state.kernel_call(plan_round)()
        v = state.step.vars  # read by field name: a NumPy record's attribute access is slow in Python
        lo, hi = int(v["round_start"]), int(v["n_slots"])
        return Plan(
            step=state.steps_done, round=int(v["n_rounds"]) - 1, purpose="screen" if v["screening"] else "train",
            prompt_ids=state.step.prompt[lo:hi].copy(), n_rollouts=state.step.n[lo:hi].copy(),
        )

    def observe(self, state: PolicyState, successes=None, *, rewards=None, threshold: float = 0.5,
                score_stats=None) -> bool:
        """Report the last plan's outcome; returns True when the training step is complete.

        Give either `successes` (one count per slot) or `rewards` (one per rollout, slots in plan order; a reward
        above `threshold` is a success). `score_stats` (slots x 3: E1||s||^2, E0||s||^2, ||E1 s - E0 s||^2)
        optionally feeds Eq. 21 with measured score norms.
        """
        self._check_state(state)
        if not state.awaiting_observation:
            raise ValueError("nothing to observe: call plan() first")
        B = state.step
        lo, hi = int(B.vars["round_start"]), int(B.vars["n_slots"])
        n = B.n[lo:hi]
        if (successes is None) == (rewards is None):
            raise ValueError("give exactly one of successes (per slot) or rewards (per rollout)")
        if rewards is not None:
            r = np.asarray(rewards, dtype=np.float64).reshape(-1)
            if r.size != n.sum():
                raise ValueError(f"rewards has {r.size} entries; the plan has {int(n.sum())} rollouts")
            flags = successes_from_rewards(r, threshold)
            s = np.add.reduceat(flags, np.concatenate(([0], np.cumsum(n)[:-1]))) if n.size else flags
        else:
            s = np.asarray(successes, dtype=np.float64).reshape(-1)
            if s.size != n.size:
                raise ValueError(f"successes has {s.size} entries; the plan has {n.size} slots")
            if np.isnan(s).any() or (s < 0).any() or (s > n).any():
                raise ValueError("successes must lie in [0, n_rollouts] for every slot")
        if score_stats is not None:
            st = np.asarray(score_stats, dtype=np.float64)
            if st.shape != (n.size, 3):
                raise ValueError(f"score_stats must have shape ({n.size}, 3); got {st.shape}")
            if (st[np.isfinite(st)] < 0).any():
                raise ValueError("score_stats must be >= 0 (NaN for unknown)")
            B.score[lo:hi] = st
        B.succ[lo:hi] = s
        return bool(state.kernel_call(observe_round)())

    def training_batch(self, state: PolicyState) -> TrainingBatch:
        """The finished step's slots and their training groups."""
        self._check_state(state)
        B = state.step
        if not B.vars["done"] or state.steps_done == 0:
            raise ValueError("the step is not finished: keep calling plan() and observe()")
        k = int(B.vars["n_slots"])
        n, succ, group = B.n[:k].copy(), B.succ[:k].copy(), B.group[:k].copy()
        kept = np.stack([succ, n - succ], axis=1).astype(np.int64)  # whole slots ...
        part = B.keep[:k, 0] >= 0
        if part.any():  # ... or the part a policy kept
            kept[part] = B.keep[:k][part]
        kept[group < 0] = 0
        return TrainingBatch(B.prompt[:k].copy(), n, succ, group, B.round[:k].copy(), kept[:, 0], kept[:, 1],
                             B.baseline[: int(B.vars["n_groups"])].copy(), B.slot_id[:k].copy(), B.source[:k].copy())

    def run_step(self, state: PolicyState, outcome: Callable[[Plan], np.ndarray]) -> TrainingBatch:
        """One whole training step: plan and observe rounds until done; `outcome(plan)` returns per-slot successes."""
        while True:
            plan = self.plan(state)
            if self.observe(state, outcome(plan)):
                return self.training_batch(state)
