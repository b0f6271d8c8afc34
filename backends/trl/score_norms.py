"""Per-response score norms for the paper's Eq. 21, measured as the released CurES and GVM code does.

For a response y to prompt x, g(y) = || d/dW [ -sum_t log pi(y_t | x, y_<t) ] || over the input-embedding matrix W
only (a sequence sum, not length-normalised; one backward pass per response). Per slot, with c / w its correct /
wrong responses, Eq. 21's statistics are filled in with the released code's scalar stand-ins:
E_1||s||^2 = mean_c g^2, E_0||s||^2 = mean_w g^2, ||E_1 s - E_0 s||^2 ~ (mean_c g - mean_w g)^2 (the released
code's scalar form of Eq. 21). A slot without correct or without wrong responses gets NaN, which the policies read as
"unit norms" (its sigma is 0 anyway when every response agrees).
"""

from __future__ import annotations

import numpy as np
import torch


def response_score_norms(model, rollouts) -> list[float]:
    """g(y) for every rollout (`.prompt_ids`, `.completion_ids` token lists), one forward and backward each."""
    weight = model.get_input_embeddings().weight
    device = weight.device
    norms = []
    for r in rollouts:
        if not r.completion_ids:
            norms.append(0.0)
            continue
        ids = torch.tensor([list(r.prompt_ids) + list(r.completion_ids)], device=device)
        logits = model(input_ids=ids).logits[0, len(r.prompt_ids) - 1 : -1].float()
        target = ids[0, len(r.prompt_ids) :]
        nll = -torch.log_softmax(logits, dim=-1).gather(1, target[:, None]).sum()
        (grad,) = torch.autograd.grad(nll, weight)
        norms.append(float(grad.float().norm()))
    return norms


def slot_score_stats(norms: np.ndarray, correct: np.ndarray, slot: np.ndarray, n_slots: int) -> np.ndarray:
    """(n_slots, 3) statistics (E_1||s||^2, E_0||s||^2, gap^2) from per-rollout norms, correctness and slots."""
    out = np.full((n_slots, 3), np.nan)
    for k in range(n_slots):
        here = slot == k
        c, w = norms[here & correct], norms[here & ~correct]
        if c.size and w.size:
            out[k] = (np.mean(c**2), np.mean(w**2), (c.mean() - w.mean()) ** 2)
        elif c.size:
            out[k, 0] = np.mean(c**2)
        elif w.size:
            out[k, 1] = np.mean(w**2)
    return out
