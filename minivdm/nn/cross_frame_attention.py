r"""Cross-frame attention (Text2Video-Zero, Khachatryan et al., 2023, arXiv:2303.13439, Sec. 3.3).

An image model's self-attention, run on the m frames of a video, lets each frame attend to itself. In
cross-frame attention every frame k keeps its own queries but takes its keys and values from the
first frame:

    CrossFrameAttn(Q^k, K^{1:m}, V^{1:m}) = softmax(Q^k (K^1)^T / sqrt(d)) V^1,
    Q^k = W_Q x^k,   K^1 = W_K x^1,   V^1 = W_V x^1

so every frame reads its appearance (object identity, colours, background) from frame 1, with the
image model's weights unchanged: no training. Cross-attention to the text is left as it is.

ControlVideo (Zhang et al., 2023, arXiv:2305.13077, Sec. 3.2) takes keys and values from *all* frames,
fully cross-frame attention:

    FullyCrossFrameAttn(Q^k, K^{1:m}, V^{1:m}) = softmax(Q^k [K^1, ..., K^m]^T / sqrt(d)) [V^1; ...; V^m]

(one self-attention over the m n tokens of the video), and its hierarchical sampler lets the frames of a
clip take them from the clip's two key frames, its first and last (``keys_from="ends"``).

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


KEYS_FROM = ("first", "all", "ends")  # Text2Video-Zero; ControlVideo; ControlVideo's clips between two key frames


class CrossFrameAttention(nn.Module):
    """Wraps a self-attention layer (sharing its weights): keys and values from the first frame
    (``keys_from="first"``), from all frames (``"all"``) or from the first and last (``"ends"``)."""

    def __init__(self, attention: Attention, num_frames: int, keys_from: str = "first"):
        super().__init__()
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if keys_from not in KEYS_FROM:
            raise ValueError(f"keys_from must be one of {KEYS_FROM}, got {keys_from!r}")
        self.attention, self.num_frames, self.keys_from = attention, num_frames, keys_from

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        if context is not None:  # cross-attention (to the text) is not changed
            return self.attention(x, context, mask)
        if self.keys_from == "first":
            return self.attention(x, first_frame_context(x, self.num_frames), mask)
        if x.ndim != 3 or x.shape[0] % self.num_frames:
            raise ValueError(f"tokens must be ((B * frames), N, D) with frames = {self.num_frames}, got {tuple(x.shape)}")
        # every frame's queries in one row of f n tokens: attending to a context of the video's tokens
        video = rearrange(x, "(b f) n d -> b (f n) d", f=self.num_frames)
        if self.keys_from == "all":
            keys = video                                       # self-attention over the whole video
        else:
            frames = rearrange(x, "(b f) n d -> b f n d", f=self.num_frames)
            keys = rearrange(frames[:, [0, -1]], "b f n d -> b (f n) d")  # the first and last frames only
        out = self.attention(video, keys, mask)
        return rearrange(out, "b (f n) d -> (b f) n d", f=self.num_frames)


@contextmanager
def cross_frame_attention(model: nn.Module, num_frames: int, keys_from: str = "first"):
    """Within the block, every transformer block's self-attention (``attn1``) in ``model`` (a U-Net, a
    ControlNet, or a module holding both) is cross-frame attention over groups of ``num_frames`` batch
    items, keys and values ``keys_from`` (``KEYS_FROM``); the original layers are put back on exit."""
    if keys_from not in KEYS_FROM:
        raise ValueError(f"keys_from must be one of {KEYS_FROM}, got {keys_from!r}")
    from minivdm.nn.transformer_2d import BasicTransformerBlock

    blocks = [module for module in model.modules() if isinstance(module, BasicTransformerBlock)]
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no transformer blocks: cross-frame attention needs a U-Net "
                         f"with self-attention (minivdm's SD-layout U-Net)")
    originals = [block.attn1 for block in blocks]
    try:
        for block, attention in zip(blocks, originals):
            block.attn1 = CrossFrameAttention(attention, num_frames, keys_from)
        yield model
    finally:
        for block, attention in zip(blocks, originals):
            block.attn1 = attention
