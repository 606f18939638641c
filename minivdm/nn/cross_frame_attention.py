r"""Cross-frame attention (Text2Video-Zero, Khachatryan et al., 2023, arXiv:2303.13439, Sec. 3.3).

An image model's self-attention, run on the m frames of a video, lets each frame attend to itself. In
cross-frame attention every frame k keeps its own queries but takes its keys and values from the
first frame:

    CrossFrameAttn(Q^k, K^{1:m}, V^{1:m}) = softmax(Q^k (K^1)^T / sqrt(d)) V^1,
    Q^k = W_Q x^k,   K^1 = W_K x^1,   V^1 = W_V x^1

so every frame reads its appearance (object identity, colours, background) from frame 1, with the
image model's weights unchanged: no training. Cross-attention to the text is left as it is.

Frames travel on the batch axis, ``(b f) n d``: b videos (a classifier-free-guidance batch holds two,
unconditional and conditional, each with its own first frame) of f frames each.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from einops import rearrange, repeat
from torch import nn

from minivdm.nn.attention import Attention


def first_frame_context(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The tokens of each video's first frame, repeated for each of its frames: ((b f), n, d) -> same."""
    if x.ndim != 3 or x.shape[0] % num_frames:
        raise ValueError(f"tokens must be ((B * frames), N, D) with frames = {num_frames}, got {tuple(x.shape)}")
    first = rearrange(x, "(b f) n d -> b f n d", f=num_frames)[:, 0]
    return repeat(first, "b n d -> (b f) n d", f=num_frames)


class CrossFrameAttention(nn.Module):
    """Wraps a self-attention layer (sharing its weights): keys and values from the first frame."""

    def __init__(self, attention: Attention, num_frames: int):
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.attention, self.num_frames = attention, num_frames

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        if context is not None:  # cross-attention (to the text) is not changed
            return self.attention(x, context, mask)
        return self.attention(x, first_frame_context(x, self.num_frames), mask)


@contextmanager
def cross_frame_attention(model: nn.Module, num_frames: int):
    """Within the block, every transformer block's self-attention (``attn1``) in ``model`` is cross-frame
    attention over groups of ``num_frames`` batch items; the original layers are put back on exit."""
    from minivdm.nn.transformer_2d import BasicTransformerBlock

    blocks = [module for module in model.modules() if isinstance(module, BasicTransformerBlock)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no transformer blocks: cross-frame attention needs a U-Net "
                         f"with self-attention (minivdm's SD-layout U-Net)")
    originals = [block.attn1 for block in blocks]
    try:
        for block, attention in zip(blocks, originals):
            block.attn1 = CrossFrameAttention(attention, num_frames)
        yield model
    finally:
        for block, attention in zip(blocks, originals):
            block.attn1 = attention
