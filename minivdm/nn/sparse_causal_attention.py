r"""Sparse-causal spatio-temporal attention (Tune-A-Video, Wu et al., 2023, arXiv:2212.11565, Sec. 4.1).

An image model's self-attention lets the tokens of frame i attend to frame i only. Tune-A-Video keeps
its weights and widens what each frame looks at, to the first frame and the frame just before:

    ST-Attn(z_{v_i}) = softmax(Q K^T / sqrt(d)) V,
    Q = W^Q z_{v_i},   K = W^K [z_{v_1}; z_{v_{i-1}}],   V = W^V [z_{v_1}; z_{v_{i-1}}]

([ ; ] joins the two frames' tokens). Frame 1 anchors every frame's appearance (as Text2Video-Zero's
cross-frame attention does); frame i-1 carries it forward frame by frame. Attending to all frames
would cost O((m n)^2) for m frames of n tokens; these two cost O(2 m n^2), linear in m. "Causal":
no frame looks ahead. Frame 1 has no frame before it, so its context is [z_{v_1}; z_{v_1}]: the same
keys twice, which is exactly self-attention (each key's weight halves, the sum is unchanged).

Frames travel on the batch axis, ``(b f) n d``.
"""

from __future__ import annotations

import torch
from einops import rearrange

from minivdm.nn.attention import Attention


def previous_frame_index(num_frames: int) -> torch.Tensor:
    """i -> i - 1 for frames 0..m-1 (0-based), frame 0 -> 0: it has no frame before it."""
    return (torch.arange(num_frames) - 1).clamp(min=0)


def sparse_causal_context(tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The keys' and values' input of every frame: [frame 1 ; frame i-1], ((b f), n, d) -> ((b f), 2 n, d)."""
    if tokens.ndim != 3 or num_frames < 1 or tokens.shape[0] % num_frames:
        raise ValueError(f"tokens must be ((B * frames), N, D) with frames = {num_frames}, got {tuple(tokens.shape)}")
    frames = rearrange(tokens, "(b f) n d -> b f n d", f=num_frames)
    first = frames[:, [0] * num_frames]                         # z_{v_1}, for every frame
    previous = frames[:, previous_frame_index(num_frames)]      # z_{v_{i-1}}
    return rearrange(torch.cat([first, previous], dim=2), "b f n d -> (b f) n d")


class SparseCausalAttention(Attention):
    """Self-attention whose keys and values come from frame 1 and frame i-1 (same weights, same names:
    an image model's ``attn1`` loads into it unchanged). ``sparse_causal=False`` is plain per-frame
    self-attention, the ablation that removes ST-attention."""

    def __init__(self, *args, sparse_causal: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.sparse_causal = sparse_causal

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None, *,
                num_frames: int | None = None) -> torch.Tensor:
        if context is not None:
            raise ValueError("SparseCausalAttention is self-attention: it takes no context (cross-attention is attn2)")
        if not self.sparse_causal:
            return super().forward(x, None, mask)
        if num_frames is None:
            raise ValueError("SparseCausalAttention needs num_frames: the frames of each video on the batch axis")
        return super().forward(x, sparse_causal_context(x, num_frames), mask)
