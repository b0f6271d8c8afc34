"""The uniform Python interface to the compiled policies: validated parameters, explicit state, plan/observe.

    policy = make_policy("cures", batch_size=64, budget=512)
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
from cures.policies import kernels as K
from cures.policies.dispatch import observe_round, plan_round, specialised
from cures.policies.spec import PolicySpec, get_spec
from cures.posterior import BetaPosterior, successes_from_rewards
from cures.sumtree import leaves, new_tree

STATE_FORMAT = "cures.PolicyState"
STATE_VERSION = 1

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
    """Every slot generated in the finished step, and the training group of each (-1: not trained)."""

    prompt_ids: np.ndarray
    n_rollouts: np.ndarray
    successes: np.ndarray
    group: np.ndarray
    round: np.ndarray

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if self.group.size else 0

    @property
    def rollouts_generated(self) -> int:
        return int(self.n_rollouts.sum())

    @property
    def rollouts_trained(self) -> int:
        return int(self.n_rollouts[self.group >= 0].sum())


@dataclass
class PolicyState:
    """Everything a policy remembers: kernel parameters, arrays, the current step's slots and its RNG."""

    policy: str
    params: dict
    kernel: K.Params
    arrays: K.State
    step: K.StepBuffer
    rng: np.random.Generator

    @property
    def n_prompts(self) -> int:
        return self.arrays.alpha.shape[0]

    def kernel_call(self, dispatcher):
        """`dispatcher(kind, P, S, B, rng)` compiled for this state's policy kind and array types (memoised)."""
        entries = self.__dict__.setdefault("_entries", {})
        if dispatcher not in entries:
            entries[dispatcher] = specialised(dispatcher, self.kernel.kind, self.kernel, self.arrays, self.step,
                                              self.rng)
        fn = entries[dispatcher]
        return lambda: fn(self.kernel.kind, self.kernel, self.arrays, self.step, self.rng)

    @property
    def steps_done(self) -> int:
        return int(self.arrays.ireg[K.STEP])

    @property
    def rollouts_total(self) -> int:
        """Every rollout planned so far, screening and refills included."""
        return int(self.arrays.ireg[K.ROLLOUTS])

    @property
    def awaiting_observation(self) -> bool:
        return bool(self.step.reg[K.AWAITING])

    def sampling_ess(self) -> float | None:
        """Kish effective sample size (sum w)^2 / sum w^2 of the weights rho* (Eq. 14) currently draws prompts with;
        None for policies that do not sample from rho*."""
        if self.arrays.tree.size == 0:
            return None
        w = leaves(self.arrays.tree, int(self.arrays.ireg[K.TREE_HEIGHT]), self.n_prompts)
        total = w.sum()
        return float(total**2 / (w**2).sum()) if total > 0 else None

    def posterior(self) -> BetaPosterior:
        """A copy of the pass-rate posterior as a `BetaPosterior`."""
        post = BetaPosterior(self.n_prompts, prior=(self.kernel.prior_alpha, self.kernel.prior_beta),
                             decay=self.kernel.decay)
        for name in ("alpha", "beta", "alpha0", "beta0"):
            getattr(post, name)[:] = getattr(self.arrays, name)
        return post

    def posterior_mean(self) -> np.ndarray:
        return self.posterior().mean()

    def copy(self) -> PolicyState:
        return PolicyState(
            self.policy, copy.deepcopy(self.params), self.kernel,
            K.State(*(a.copy() for a in self.arrays)), K.StepBuffer(*(a.copy() for a in self.step)),
            copy.deepcopy(self.rng),
        )

    def save(self, path) -> Path:
        """Write the whole state to one versioned .npz file (no pickle), atomically."""
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.params.items()}
        meta = {
            "format": STATE_FORMAT, "version": STATE_VERSION, "policy": self.policy, "params": params,
            "kernel": self.kernel._asdict(), "rng": _rng_state(self.rng),
        }
        arrays = {f"state.{k}": v for k, v in self.arrays._asdict().items()}
        arrays.update({f"step.{k}": v for k, v in self.step._asdict().items()})
        return atomic_save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path) -> PolicyState:
        """Read a state written by `save`. Every metadata key, array shape, dtype and value range is checked against
        a fresh state of the same policy and size, so a damaged file is a ValueError naming the file and the problem,
        never a crash inside compiled code."""
        meta, arrays = load_npz(path, STATE_FORMAT, (STATE_VERSION,))
        try:
            return _checked_state(meta, arrays)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


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
    kernel = meta["kernel"]
    if not isinstance(kernel, dict) or set(kernel) != set(K.Params._fields):
        fields, known = (set(kernel) if isinstance(kernel, dict) else set()), set(K.Params._fields)
        raise ValueError(f"kernel parameters differ from this version's (missing: {sorted(known - fields)}, "
                         f"unknown: {sorted(fields - known)})")
    if K.Params(**kernel) != ref.kernel:
        bad = [f for f in K.Params._fields if kernel[f] != getattr(ref.kernel, f)]
        raise ValueError(f"kernel parameters {', '.join(bad)} do not follow from the policy's parameters")
    loaded = {}
    for prefix, template in (("state", ref.arrays), ("step", ref.step)):
        for name, want in template._asdict().items():
            key = f"{prefix}.{name}"
            got = arrays.get(key)
            if got is None:
                raise ValueError(f"array {key} is missing")
            if got.dtype != want.dtype or got.shape != want.shape:
                raise ValueError(f"array {key} has dtype {got.dtype} and shape {got.shape}; expected {want.dtype} "
                                 f"and {want.shape}")
            loaded[key] = np.ascontiguousarray(got)
    unknown = set(arrays) - set(loaded)
    if unknown:
        raise ValueError(f"unknown arrays {', '.join(sorted(unknown))}")
    S = K.State(**{f: loaded[f"state.{f}"] for f in K.State._fields})
    B = K.StepBuffer(**{f: loaded[f"step.{f}"] for f in K.StepBuffer._fields})
    _check_ranges(S, B, ref)
    try:
        rng = _rng_from_state(meta["rng"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"metadata 'rng' is not a PCG64 state ({exc})") from None
    return PolicyState(meta["policy"], dict(policy.params), ref.kernel, S, B, rng)


def _check_ranges(S: K.State, B: K.StepBuffer, ref: PolicyState) -> None:
    """Values the compiled kernels index with or divide by must lie where a real run can put them."""
    n, cap = S.alpha.size, B.prompt.size

    def need(ok, what):
        if not ok:
            raise ValueError(what)

    for name in ("alpha", "beta", "alpha0", "beta0"):
        a = getattr(S, name)
        need(np.isfinite(a).all() and (a >= 0).all(), f"state.{name} must be finite and >= 0")
    for name in ("sigma", "weight", "tree", "last"):
        a = getattr(S, name)
        need(np.isfinite(a).all() and (a >= 0).all(), f"state.{name} must be finite and >= 0")
    need((S.n_static >= 0).all() and (S.streak >= 0).all(), "state counts must be >= 0")
    need(np.array_equal(np.sort(S.order), np.arange(n)), "state.order must be a permutation of the prompts")
    need(((S.queue >= 0) & (S.queue < n)).all(), "state.queue holds prompt ids outside 0..n-1")
    need(np.isfinite(S.freg).all(), "state.freg must be finite")
    r = S.ireg
    need((r >= -1).all() and (np.delete(r, K.SUBSET) >= 0).all(), "state.ireg holds negative counters")
    need(r[K.N_SUBSETS] == ref.arrays.ireg[K.N_SUBSETS] and r[K.TREE_HEIGHT] == ref.arrays.ireg[K.TREE_HEIGHT],
         "state.ireg disagrees with the policy's subsets or sum-tree height")
    need(r[K.SUBSET] < r[K.N_SUBSETS], "state.ireg subset index out of range")
    need(r[K.CURSOR] <= n and r[K.QUEUE_LEN] <= n, "state.ireg cursor or queue length exceeds the prompts")
    need(r[K.PHASE] in (K.NEED_SUBSET, K.TRAINING), "state.ireg phase is not a known phase")
    b = B.reg
    need((b >= 0).all() and b[K.N_SLOTS] <= cap and b[K.ROUND_START] <= b[K.N_SLOTS],
         "step.reg slot counters out of range")
    need(b[K.DONE] in (0, 1) and b[K.AWAITING] in (0, 1) and b[K.PURPOSE] in (K.TRAIN, K.SCREEN),
         "step.reg flags out of range")
    need(((B.prompt >= 0) & (B.prompt < n)).all(), "step.prompt holds prompt ids outside 0..n-1")
    need((B.n >= 0).all() and (B.group >= -1).all() and (B.round >= 0).all(), "step counts must be >= 0")
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


def make_policy_for_budget(name: str, batch_size: int | None = None, budget: int | None = None, **params) -> Policy:
    """`make_policy` with a batch size and a rollout budget applied where the policy has such parameters.

    A budgeted policy gets `budget` itself; a fixed-n policy (GRPO-style groups) gets n = max(2, budget // batch_size);
    a policy with neither (e.g. `gvm`, `cures-released`, which size their steps themselves) ignores `budget`.
    Explicit `params` win."""
    names = {p.name for p in get_spec(name).params}
    given = {}
    if batch_size is not None and "batch_size" in names:
        given["batch_size"] = batch_size
    if budget is not None:
        if "budget" in names:
            given["budget"] = budget
        elif "n" in names:
            given["n"] = max(2, budget // (batch_size or get_spec(name).defaults()["batch_size"]))
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
    def kernel_params(self, n_prompts: int) -> K.Params:
        """The compiled kernels' parameters for a dataset of `n_prompts` prompts (checked against it)."""
        v = dict(self.params)
        if "batch_size" in v and v.get("budget", 0) is None:
            v["budget"] = 8 * v["batch_size"]
        if self.spec.resolve is not None:
            v = self.spec.resolve(v)
        if self.spec.check is not None:
            try:
                self.spec.check(v, n_prompts)
            except ValueError as exc:
                raise ValueError(f"{self.name}: {exc}") from None
        fields = dict(self.spec.fixed, kind=self.spec.kind)
        field_of = {p.name: p.field or p.name for p in self.spec.params}
        for name, val in v.items():
            key = field_of.get(name, name)
            if key == "prior":
                fields["prior_alpha"], fields["prior_beta"] = val
            elif key == "n_max":
                fields["n_max"] = 0 if val is None else val
            elif key == "sigma":
                fields["sigma_source"] = K.SIGMA_PRE_ROLLOUT if val == "pre-rollout" else K.SIGMA_POSTERIOR
            elif key in K.Params._fields:
                fields[key] = val
            else:
                raise AssertionError(f"parameter {name!r} of {self.name} has no kernel field")
        if fields.get("subsets", 1) == 0:  # auto: subsets of about M x m prompts (the released code)
            fields["subsets"] = max(1, round(n_prompts / (fields["steps_per_subset"] * fields["batch_size"])))
        fields["subsets"] = min(fields.get("subsets", 1), n_prompts)
        return K.Params(**fields)

    def init(self, n_prompts: int, seed: int = 0, posterior: BetaPosterior | None = None) -> PolicyState:
        """Fresh state for `n_prompts` prompts; `posterior` optionally supplies starting counts (e.g. offline)."""
        if isinstance(n_prompts, bool) or int(n_prompts) != n_prompts or n_prompts < 1:
            raise ValueError(f"n_prompts must be an integer >= 1; got {n_prompts!r}")
        n_prompts = int(n_prompts)
        P = self.kernel_params(n_prompts)
        rng = np.random.default_rng(seed)
        if posterior is not None and posterior.n_prompts != n_prompts:
            raise ValueError(f"posterior covers {posterior.n_prompts} prompts, not {n_prompts}")
        alpha0 = np.full(n_prompts, P.prior_alpha) if posterior is None else posterior.alpha0.copy()
        beta0 = np.full(n_prompts, P.prior_beta) if posterior is None else posterior.beta0.copy()
        uses_tree = self.spec.kind == K.CURES and P.sampling == K.SAMPLE_RHO
        tree, height = new_tree(n_prompts) if uses_tree else (np.zeros(0), 0)
        ireg = np.zeros(K.N_IREG, np.int64)
        ireg[K.SUBSET] = -1
        ireg[K.N_SUBSETS] = P.subsets
        ireg[K.TREE_HEIGHT] = height
        arrays = K.State(
            alpha=alpha0.copy() if posterior is None else posterior.alpha.copy(),
            beta=beta0.copy() if posterior is None else posterior.beta.copy(),
            alpha0=alpha0, beta0=beta0,
            sigma=np.zeros(n_prompts), weight=np.ones(n_prompts), n_static=np.zeros(n_prompts, np.int64),
            order=rng.permutation(n_prompts).astype(np.int64), queue=np.zeros(n_prompts, np.int64),
            tree=tree,
            streak=np.zeros((n_prompts if self.spec.per_prompt_history else 0, 2), np.int64),
            last=np.zeros((n_prompts if self.spec.per_prompt_history else 0, 2)),
            mark=np.zeros(n_prompts, np.uint8),
            ireg=ireg, freg=np.zeros(K.N_FREG),
        )
        arrays.freg[K.Q_EASY] = arrays.freg[K.Q_HARD] = P.q_init
        cap = (self.spec.capacity or self._capacity)(P, n_prompts)
        step = K.StepBuffer(
            prompt=np.zeros(cap, np.int64), n=np.zeros(cap, np.int64), succ=np.zeros(cap),
            score=np.full((cap, 3), np.nan), group=np.full(cap, -1, np.int64), round=np.zeros(cap, np.int64),
            reg=np.zeros(K.N_BREG, np.int64),
        )
        step.reg[K.DONE] = 1
        return PolicyState(self.name, dict(self.params), P, arrays, step, rng)

    @staticmethod
    def _capacity(P: K.Params, n_prompts: int) -> int:
        """Slots one step can hold: a screening round over the largest subset plus one training round."""
        largest_subset = -(-n_prompts // P.subsets)
        screens = P.n_pre > 0 or P.kind == K.CURES_RELEASED
        return P.batch_size + (largest_subset if screens else 0)

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
        lo, hi = state.step.reg[K.ROUND_START], state.step.reg[K.N_SLOTS]
        return Plan(
            step=state.steps_done, round=int(state.step.reg[K.N_ROUNDS]) - 1,
            purpose="screen" if state.step.reg[K.PURPOSE] == K.SCREEN else "train",
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
        lo, hi = int(B.reg[K.ROUND_START]), int(B.reg[K.N_SLOTS])
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
        if not B.reg[K.DONE] or state.steps_done == 0:
            raise ValueError("the step is not finished: keep calling plan() and observe()")
        k = int(B.reg[K.N_SLOTS])
        return TrainingBatch(B.prompt[:k].copy(), B.n[:k].copy(), B.succ[:k].copy(), B.group[:k].copy(),
                             B.round[:k].copy())

    def run_step(self, state: PolicyState, outcome: Callable[[Plan], np.ndarray]) -> TrainingBatch:
        """One whole training step: plan and observe rounds until done; `outcome(plan)` returns per-slot successes."""
        while True:
            plan = self.plan(state)
            if self.observe(state, outcome(plan)):
                return self.training_batch(state)
