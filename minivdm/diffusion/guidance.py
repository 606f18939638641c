r"""Classifier-free guidance (Ho & Salimans, 2022, arXiv:2207.12598).

One network is trained both with the condition c and with it dropped (c = empty); at sampling time
the two predictions are extrapolated:

    pred_w = pred(z_t, empty) + w (pred(z_t, c) - pred(z_t, empty))

w = 1 is the plain conditional model; w > 1 trades diversity for fidelity to c. Being linear, the
rule applies to eps, x0 or v predictions alike.
"""

from __future__ import annotations

from typing import Callable

import torch
from einops import repeat

from minivdm.validation import check_in_range, check_same_shape, check_tensor


def classifier_free_guidance(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    check_tensor(pred_cond, "pred_cond", floating=True)
    check_tensor(pred_uncond, "pred_uncond", floating=True)
    check_same_shape(pred_cond, pred_uncond, "pred_cond", "pred_uncond")
    check_in_range(guidance_scale, "guidance_scale", float("-inf"), float("inf"))  # a number, not NaN
    return pred_uncond + guidance_scale * (pred_cond - pred_uncond)


def guided_model(model: Callable, condition: torch.Tensor, null_condition: torch.Tensor,
                 guidance_scale: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Wrap ``model(z_t, t, condition)`` into ``model_fn(z_t, t)`` that applies guidance.

    Both branches run in one batch of 2B: [unconditional; conditional].
    """
    if condition.shape[0] != null_condition.shape[0]:
        raise ValueError(f"condition and null_condition need the same batch size, got {condition.shape[0]} and {null_condition.shape[0]}")

    def model_fn(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        batch = z_t.shape[0]
        check_tensor(t, "t", ndim=1, layout=f"(B,) = ({batch},), one time per batch item")
        if t.shape[0] != batch or condition.shape[0] != batch:
            raise ValueError(f"z_t, t and condition need one entry per batch item: z_t has {batch}, t has "
                             f"{t.shape[0]}, condition has {condition.shape[0]} (repeat the condition for each sample)")
        both = model(repeat(z_t, "b ... -> (two b) ...", two=2), repeat(t, "b -> (two b)", two=2),
                     torch.cat([null_condition, condition]))
        pred_uncond, pred_cond = both.chunk(2)
        return classifier_free_guidance(pred_cond, pred_uncond, guidance_scale)

    return model_fn
