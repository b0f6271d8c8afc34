"""GRPO, CurES and the four 2026 peers on one scenario, matched in rollouts or in steps (issue 14's comparison).

    python -m cures.analysis.peers_2026 --match rollouts --out runs/peers-rollouts
    python -m cures.analysis.peers_2026 --match steps --out runs/peers-steps

Every policy spends GRPO's group size n = rollouts_per_step / prompts_per_step in its own terms
(`make_policy_for_budget`): VIP spends the same budget, Reinforce-Ada trains n per prompt, PODS generates 4n and trains
n (the paper's ratio) and Pilot-Commit splits n into a 25 % pilot and a commit (the authors' pXcY runs, X + Y = GRPO's
n).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cures.simulator.compare import compare, markdown_table, write_comparison
from cures.simulator.config import build_config

POLICIES = ["grpo", "cures", "vip", "pilot-commit", "reinforce-ada", "pods"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--match", choices=("rollouts", "steps"), default="rollouts")
    parser.add_argument("--scenario", default="paper-1.5b")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cfg = build_config(args.scenario, {"seeds": args.seeds})
    if cfg.rollouts_per_step is None:  # GRPO's default n = 8, so that every policy gets its share of the same budget
        cfg = build_config(args.scenario, {"seeds": args.seeds, "rollouts_per_step": 8 * cfg.prompts_per_step})
    result, runs = compare(POLICIES, cfg, match=args.match)
    write_comparison(args.out, result, runs, cfg)
    print(markdown_table(result))


if __name__ == "__main__":
    main()
