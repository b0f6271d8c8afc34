"""GRPO, CurES and the four 2026 peers on one scenario, matched in rollouts or in steps (issue 14's comparison).

    python -m analysis.peers_2026 --match rollouts --out runs/peers-rollouts
    python -m analysis.peers_2026 --match steps --out runs/peers-steps

The peers get their per-policy settings at GRPO's group size n = budget / batch_size: Pilot-Commit splits n into a
25 % pilot and a commit (the authors' pXcY runs, X + Y = GRPO's n), PODS generates 4n and trains n (the paper's
ratio), Reinforce-Ada trains n per prompt and VIP spends the same budget; `cures compare` gives every policy the
same parameters, so this script passes these to `simulator.compare.compare` itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simulator.compare import compare, markdown_table, write_comparison
from simulator.config import build_config

POLICIES = ["grpo", "cures", "vip", "pilot-commit", "reinforce-ada", "pods"]


def peer_settings(n: int) -> dict[str, dict]:
    """Per-policy parameters at GRPO's group size n."""
    pilot = max(2, n // 4)
    return {"pilot-commit": {"n_pilot": pilot, "n_commit": max(1, n - pilot)}, "pods": {"n": 4 * n, "m": n},
            "reinforce-ada": {"n": n}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--match", choices=("rollouts", "steps"), default="rollouts")
    parser.add_argument("--scenario", default="paper-1.5b")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cfg = build_config(args.scenario, {"seeds": args.seeds})
    n = (cfg.budget or 8 * cfg.batch_size) // cfg.batch_size
    result, runs = compare(POLICIES, cfg, match=args.match, policy_params=peer_settings(n))
    write_comparison(args.out, result, runs, cfg)
    print(markdown_table(result))


if __name__ == "__main__":
    main()
