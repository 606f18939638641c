r"""Temporal attention with learned relative positions, as in Video Diffusion Models.

Video Diffusion Models (Ho, Salimans, Gritsenko, Chan, Norouzi, Fleet, 2022, arXiv:2204.03458, Sec. 3):
after each spatial attention block of the factorised 3D U-Net comes a temporal attention block that
attends over the T frames of each pixel, space folded into the batch ("(b h w) t c"), and uses
relative position embeddings (Shaw, Uszkoreit, Vaswani, 2018, arXiv:1803.02155) so the network knows
the order of the frames without absolute time. For every head, with d = j - i clipped to [-K, K],

    A_ij  = softmax_j(q_i . (k_j + a[d]) / sqrt(d_head) + b[d] + M_ij)   learned vectors a (keys), scalars b
    out_i = sum_j A_ij (v_j + r[d])                                       learned vectors r (values)

M is the frame mask: 0 where frame i may attend to frame j, -inf where not. a and r are Shaw et al.'s
key and value embeddings; the scalar b is the simpler form T5 uses (Raffel et al., 2020, arXiv:1910.10683).
In the code each term is a table of 2K + 1 rows per head, one row per d, named after its symbol:

    b  TemporalAttention.bias_b           RelativeScalars   .table (heads, 2K + 1)
    a  TemporalAttention.key_offsets_a    RelativeVectors   .table (heads, 2K + 1, d_head)
    r  TemporalAttention.value_offsets_r  RelativeVectors   .table (heads, 2K + 1, d_head)

and calling one with T gives the term for every pair (i, j) of a T-frame clip: b[d] (heads, T, T),
a[d] or r[d] (heads, T, T, d_head), where row clip(j - i, -K, K) + K is ``relative_table_index``.

Why all three. b decides *where* a frame looks (the previous frame, the next, all of them), the same
for every pixel and every prompt. a lets the *query* choose the direction: q_i . a[d] is large for
d > 0 when q_i points along a[+1], so a pixel whose features say "moving right" (put there by the
text cross-attention) can look forward in time and one saying "moving left" backward. Without a, the
relative part of the logits ignores the query, and at high noise, where every frame of a clip looks
alike (q_i . k_j nearly the same for all j), the text cannot steer which way time is read. r says, in
the output, *where the information came from*. Without r, frames whose features are the same get the
same output whatever the weights are: a weighted average of equal vectors is that vector, so the block
could not put a square further right in frame 0 than in frame 7. With r, out_i = v + sum_j A_ij r[j - i]
differs from frame to frame: frame 0 only has keys ahead of it, the last frame only keys behind.

Why clipped distances and not T5's log-spaced buckets: the toy world's clips hold 8-16 frames, so
every distance up to K = 15 gets its own entry (2K + 1 per head) and each is trained often;
buckets pay off only for sequences much longer than the number of parameters one would spend.
a, b and r depend on j - i only (a shift of the clip leaves them unchanged) and are not symmetric
(j - i = +1 and -1 are different entries), so attention sees which way time runs.

Text inside temporal attention (optional, ``condition_dim``): a per-frame vector c (the pooled
caption) scales and shifts the normalised tokens before q, k and v, as FiLM (Perez et al., 2018,
arXiv:1709.07871) and DiT's adaLN (Peebles and Xie, 2023, arXiv:2212.09748) do,

    tokens = LN(x) * (1 + W_s c) + W_b c        W_s, W_b start at zero: the block is unchanged at init

Why here and why a scale. Which way an object moves is a choice made along time at each pixel: frame
i must copy, from frame i - 1, the features of the pixel to its left ("moving right") or to its right
("moving left"). The spatial layers can put both candidates in different channels; only a
multiplicative, text-dependent gain on the values picks one. A vector *added* to every token reaches
the values as a constant (sum_j A_ij (v_j + u) = A v + u), so it cannot pick channels, and the pooled
text in the time embedding reaches temporal attention only through the ResBlocks of every frame alike.

Joint video-image training (VDM Sec. 3): a batch's last ``num_images`` frames are independent images
appended to each video. M lets each image attend only to itself and the video frames only among
themselves; every other layer of the U-Net works frame by frame, so the images stay isolated.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from minivdm.nn.attention import Attention
from minivdm.validation import check_positive_int


def joint_video_image_mask(num_frames: int, num_images: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean (T, T), True where frame i may attend to frame j.

    The first T - num_images frames are a video (all attend to all); each of the last num_images
    frames is an independent image that attends only to itself.
    """
    check_positive_int(num_frames, "num_frames")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or not 0 <= num_images < num_frames:
        raise ValueError(f"num_images must be an int in [0, T) = [0, {num_frames}) (at least one video frame), "
                         f"got {num_images!r}")
    num_video_frames = num_frames - num_images
    allowed = torch.eye(num_frames, dtype=torch.bool, device=device)
    allowed[:num_video_frames, :num_video_frames] = True
    return allowed


def relative_table_index(num_frames: int, max_distance: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) long: d + K with d = clip(j - i, -K, K), the row of a (2K + 1)-entry table that query frame i
    uses for key frame j (row 0 is d = -K, row K is d = 0, row 2K is d = +K)."""
    check_positive_int(num_frames, "num_frames")
    positions = torch.arange(num_frames, device=device)
    distance = rearrange(positions, "j -> 1 j") - rearrange(positions, "i -> i 1")  # j - i
    return distance.clamp(-max_distance, max_distance) + max_distance


class RelativeScalars(nn.Module):
    """b: one learned scalar per head and relative distance d = clip(j - i, -K, K); calling it gives
    b[d] for every pair (heads, T, T).

    ``table`` (heads, 2K + 1) holds b[-K], ..., b[0], ..., b[K] for each head.
    """

    def __init__(self, heads: int, max_distance: int = 15):
        super().__init__()
        self.heads = check_positive_int(heads, "heads")
        self.max_distance = check_positive_int(max_distance, "max_distance")
        # zero at init: no preference for any distance until training finds one
        self.table = nn.Parameter(torch.zeros(heads, 2 * max_distance + 1))

    def forward(self, num_frames: int) -> torch.Tensor:
        """b[h, i, j] = table[h, clip(j - i, -K, K) + K], shape (heads, T, T)."""
        return self.table[:, relative_table_index(num_frames, self.max_distance, self.table.device)]


class RelativeVectors(nn.Module):
    """a or r: one learned vector per head and relative distance d = clip(j - i, -K, K); calling it gives
    the vectors for every pair (heads, T, T, dim_head).

    ``table`` (heads, 2K + 1, dim_head) holds the rows for d = -K, ..., K. Shaw et al.'s embeddings:
    TemporalAttention keeps one for the keys (a, added to k_j) and one for the values (r, added to v_j).
    """

    def __init__(self, heads: int, dim_head: int, max_distance: int = 15):
        super().__init__()
        self.heads = check_positive_int(heads, "heads")
        self.max_distance = check_positive_int(max_distance, "max_distance")
        # zero at init: the block starts as plain attention (and, with to_out at zero, as the identity)
        self.table = nn.Parameter(torch.zeros(heads, 2 * max_distance + 1, check_positive_int(dim_head, "dim_head")))

    def forward(self, num_frames: int) -> torch.Tensor:
        """e[h, i, j] = table[h, clip(j - i, -K, K) + K], shape (heads, T, T, dim_head)."""
        return self.table[:, relative_table_index(num_frames, self.max_distance, self.table.device)]


class TemporalAttention(nn.Module):
    r"""Residual self-attention over the frames of each pixel, with relative positions and a frame mask.

        tokens = LN(x) per pixel:  ((B H W), T, C)
        A_ij = softmax_j(q_i . (k_j + a[d]) / sqrt(d_head) + b[d] + M_ij)   per head, (T, T), d = clip(j - i, -K, K)
        out_i = x_i + to_out(sum_j A_ij (v_j + r[d]))

    b is ``bias_b``, a is ``key_offsets_a``, r is ``value_offsets_r`` (each a table with a row per d).

    LayerNorm normalises each token (one pixel of one frame) on its own, so nothing but the masked
    attention moves information between frames. ``to_out`` starts at zero: the block starts as the
    identity, and a U-Net built with it starts as the image model applied frame by frame.
    With ``condition_dim``, ``forward`` takes a per-frame ``condition`` ((B T), condition_dim) that
    scales and shifts the normalised tokens (module docstring); its projection also starts at zero.
    """

    def __init__(self, channels: int, heads: int, dim_head: int, max_distance: int = 15,
                 condition_dim: int | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attention = Attention(channels, heads, dim_head)
        self.bias_b = RelativeScalars(heads, max_distance)                     # b[d], added to the logits
        self.key_offsets_a = RelativeVectors(heads, dim_head, max_distance)    # a[d], added to the keys k_j
        self.value_offsets_r = RelativeVectors(heads, dim_head, max_distance)  # r[d], added to the values v_j
        nn.init.zeros_(self.attention.to_out[0].weight)
        nn.init.zeros_(self.attention.to_out[0].bias)
        self.modulation = None
        if condition_dim is not None:
            self.modulation = nn.Linear(check_positive_int(condition_dim, "condition_dim"), 2 * channels)
            nn.init.zeros_(self.modulation.weight)
            nn.init.zeros_(self.modulation.bias)

    def attention_bias(self, num_frames: int, num_images: int = 0, device: torch.device | None = None) -> torch.Tensor:
        """b[d] + M as one float mask (heads, T, T): the relative bias, -inf where attention is not allowed."""
        allowed = joint_video_image_mask(num_frames, num_images, device)
        return self.bias_b(num_frames).masked_fill(~allowed, float("-inf"))

    def attention_weights(self, tokens: torch.Tensor, num_frames: int, num_images: int = 0) -> torch.Tensor:
        """A for normalised tokens ((B H W), T, C): (N, heads, T, T), rows sum to 1, 0 where the mask forbids."""
        attention = self.attention
        q = rearrange(attention.to_q(tokens), "n t (heads d) -> n heads t d", heads=attention.heads)
        k = rearrange(attention.to_k(tokens), "n t (heads d) -> n heads t d", heads=attention.heads)
        a = self.key_offsets_a(num_frames).to(q.dtype)  # (heads, T, T, d_head): a[d]
        # q_i . (k_j + a[d]) = q_i . k_j + q_i . a[d]
        logits = (q @ k.transpose(-1, -2) + torch.einsum("nhid,hijd->nhij", q, a)) / q.shape[-1] ** 0.5
        return torch.softmax(logits + self.attention_bias(num_frames, num_images, tokens.device).to(logits.dtype), dim=-1)

    def tokens(self, x: torch.Tensor, num_frames: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        """x ((B T), C, H, W) -> the normalised tokens ((B H W), T, C) that q, k and v are made from:
        LN(x), scaled and shifted by each frame's ``condition`` ((B T), condition_dim) with ``condition_dim``."""
        height, width = x.shape[-2:]
        tokens = self.norm(rearrange(x, "(b t) c h w -> (b h w) t c", t=num_frames))
        if self.modulation is None:
            if condition is not None:
                raise ValueError("this TemporalAttention was built without condition_dim; pass condition=None")
            return tokens
        expected = (x.shape[0], self.modulation.in_features)
        if condition is None or tuple(condition.shape) != expected:
            got = None if condition is None else tuple(condition.shape)
            raise ValueError(f"condition must be ((B T), condition_dim) = {expected}, one vector per frame, got {got}")
        scale, shift = repeat(self.modulation(condition).to(tokens.dtype), "(b t) c -> (b h w) t c",
                              t=num_frames, h=height, w=width).chunk(2, dim=-1)
        return tokens * (1 + scale) + shift

    def forward(self, x: torch.Tensor, num_frames: int, *, num_images: int = 0,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """x: frames folded into the batch ((B T), C, H, W) -> ((B T), C, H, W)."""
        check_positive_int(num_frames, "num_frames")
        if x.ndim != 4 or x.shape[0] % num_frames:
            raise ValueError(f"TemporalAttention takes features ((B T), C, H, W) with B*T divisible by "
                             f"num_frames={num_frames}, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        tokens = self.tokens(x, num_frames, condition)
        # T is at most a few dozen frames: the (T, T) weights are small, so they are formed explicitly
        # (the value offsets r need them; a fused kernel would not return them)
        weights = self.attention_weights(tokens, num_frames, num_images)
        v = rearrange(self.attention.to_v(tokens), "n t (heads d) -> n heads t d", heads=self.attention.heads)
        r = self.value_offsets_r(num_frames).to(v.dtype)  # (heads, T, T, d_head): r[d]
        # sum_j A_ij (v_j + r[d]) = (A V)_i + sum_j A_ij r[d]
        out = weights @ v + torch.einsum("nhij,hijd->nhid", weights, r)
        out = self.attention.to_out[1](self.attention.to_out[0](rearrange(out, "n heads t d -> n t (heads d)")))
        return x + rearrange(out, "(b h w) t c -> (b t) c h w", h=height, w=width)
