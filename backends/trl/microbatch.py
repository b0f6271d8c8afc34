"""Bounded memory: one TRL training piece cut into micro-batches of at most `per_device_train_batch_size` rows.

A policy step trains on as many rollouts as the policy says (SPEED at m = 4 can train 96), so TRL's single
forward/backward per piece would grow with the policy. The piece is cut into K near-equal micro-batches, each run as
one more gradient-accumulation micro-step: TRL's loss for a micro-batch is computed with the accumulation count and
`steps_per_generation` scaled by K (the `dapo`/`cispo`/`vespo` token normaliser then stays the piece's), and
multiplied by `loss_multipliers`, so that the accumulated policy loss equals the loss TRL computes on the whole piece:
- token-sum losses (dapo, cispo, vespo): sum_tokens / N_tokens(generation batch); multiplier 1;
- per-sequence means (grpo, sapo, dr_grpo, luspo): mean over the piece's real rows; multiplier r_k K / R_real,
  where masked filler rows (padding added for equal per-process shares) count in neither r_k's sum nor R_real;
- bnpo, a token mean over the piece: multiplier t_k K / T.
The entropy bonus and MoE auxiliary loss are per-micro-batch means averaged as in TRL's own gradient accumulation.
"""

from __future__ import annotations

import torch

TOKEN_SUM_LOSSES = ("dapo", "cispo", "vespo")
SEQUENCE_MEAN_LOSSES = ("grpo", "sapo", "dr_grpo", "luspo")
TOKEN_MEAN_LOSSES = ("bnpo",)
LOSS_TYPES = TOKEN_SUM_LOSSES + SEQUENCE_MEAN_LOSSES + TOKEN_MEAN_LOSSES
REAL = "cures_real"  # per-row flag in the training inputs: 1 for a trained rollout, 0 for a masked filler copy


def micro_batches(inputs: dict, size: int) -> list[dict]:
    """`inputs` (TRL's per-row tensors and lists, plus scalars shared by all rows) cut into ceil(rows / size)
    contiguous micro-batches whose row counts differ by at most one."""
    rows = inputs["completion_ids"].shape[0]
    k = max(1, -(-rows // size))
    bounds = [round(i * rows / k) for i in range(k + 1)]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        piece = {}
        for key, value in inputs.items():
            per_row = (isinstance(value, torch.Tensor) and value.ndim > 0) or isinstance(value, list)
            piece[key] = value[lo:hi] if per_row and value is not None else value
        out.append(piece)
    return out


def loss_multipliers(loss_type: str, pieces: list[dict]) -> list[float]:
    """The factor each micro-batch's TRL loss (computed with accumulation scaled by K = len(pieces)) is multiplied by
    so that the sum over micro-batches is the whole piece's loss (module docstring)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r} is not supported by CuresGRPOTrainer; use one of "
                         f"{', '.join(LOSS_TYPES)}")
    k = len(pieces)
    if loss_type in TOKEN_SUM_LOSSES:
        return [1.0] * k
    if loss_type in SEQUENCE_MEAN_LOSSES:
        rows = [p["completion_ids"].shape[0] for p in pieces]
        real = [float(p[REAL].sum()) if REAL in p else float(r) for p, r in zip(pieces, rows, strict=True)]
        total = sum(real)
        return [r * k / total if total else 0.0 for r in rows]
    tokens = [float(_mask(p).sum()) for p in pieces]
    total = sum(tokens)
    return [t * k / total if total else 0.0 for t in tokens]


def _mask(piece: dict) -> torch.Tensor:
    mask = piece["completion_mask"]
    return mask * piece["tool_mask"] if piece.get("tool_mask") is not None else mask
