"""Advantages for groups of unequal size, keyed by the group's slot in the policy's plan.

CurES samples prompts with replacement and gives each draw its own n_i, so TRL's `rewards.view(-1, G)` grouping
does not apply. With equal groups these functions reproduce TRL 1.16's own advantages (`scale_rewards` "group",
"batch" or "none", epsilon 1e-4, NaN-aware means and unbiased stds; unscorable rollouts get 0).
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")
ESTIMATORS = ("grpo", "rloo")
WEIGHTINGS = ("policy", "prompt", "rollout")  # the policy's own, Eq. 16's per-prompt mean
# (`cures.policies.step.TrainedRollouts.weights`), TRL's per rollout


def _group_sums(values: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    return torch.zeros(n_groups, dtype=values.dtype, device=values.device).index_add_(0, groups, values)


def slot_advantages(rewards: torch.Tensor, slots: torch.Tensor, scale: str = "group", estimator: str = "grpo",
                    eps: float = 1e-4, baseline: torch.Tensor | None = None) -> torch.Tensor:
    """Per-rollout advantages; rollouts with equal `slots` form a group (any size, any order).

    grpo: A = (r - mean_g) / (std_g + eps) ("group"), / (std of the whole batch + eps) ("batch") or unscaled
    ("none", Dr. GRPO); std is the unbiased std and is 0 for a group of one. rloo: A = r - mean of the other
    rollouts of the group (0 for a group of one). NaN rewards (unscorable) are left out of every statistic and get 0.
    `baseline[g]` = (successes, rollouts), indexed by slot value, replaces group g's statistics (mean, std, and the
    others' sum for rloo) by those of that many 0/1 rewards when its rollouts are > 0 (a pool larger than the
    trained group, e.g. Reinforce-Ada's every rollout of the prompt in the step).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    if rewards.shape != slots.shape or rewards.dim() != 1:
        raise ValueError(f"rewards and slots must be 1-D of equal length; got {tuple(rewards.shape)} and "
                         f"{tuple(slots.shape)}")
    r = rewards.to(torch.float64)
    valid = ~torch.isnan(r)
    r0 = torch.where(valid, r, torch.zeros_like(r))
    keys, groups = torch.unique(slots, return_inverse=True)
    n_groups = int(groups.max()) + 1 if groups.numel() else 0
    count = _group_sums(valid.to(torch.float64), groups, n_groups)
    total = _group_sums(r0, groups, n_groups)
    mean = total / count.clamp(min=1)
    sq = _group_sums(torch.where(valid, (r - mean[groups]) ** 2, torch.zeros_like(r)), groups, n_groups)
    std = torch.where(count > 1, (sq / (count - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq))
    if baseline is not None:
        pool = torch.as_tensor(baseline, dtype=torch.float64)[keys.cpu()].to(r.device)
        k, n = pool[:, 0], pool[:, 1]
        pooled = n > 0
        count, total = torch.where(pooled, n, count), torch.where(pooled, k, total)
        mean = torch.where(pooled, k / n.clamp(min=1), mean)
        pool_std = (k * (n - k) / (n * (n - 1)).clamp(min=1)).sqrt()
        std = torch.where(pooled, torch.where(n > 1, pool_std, torch.zeros_like(std)), std)
    if estimator == "rloo":
        others = (count[groups] - 1).clamp(min=1)
        adv = torch.where(count[groups] > 1, r - (total[groups] - r0) / others, torch.zeros_like(r))
    else:
        adv = r - mean[groups]
        if scale == "group":
            adv = adv / (std[groups] + eps)
        elif scale == "batch":
            kept = r[valid]
            std = kept.std() if kept.numel() > 1 else torch.zeros((), dtype=r.dtype)
            adv = adv / (std + eps)
    return torch.nan_to_num(adv, nan=0.0).to(rewards.dtype)

