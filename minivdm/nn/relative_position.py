r"""Temporal attention with learned relative positions, as in Video Diffusion Models.

Video Diffusion Models (Ho, Salimans, Gritsenko, Chan, Norouzi, Fleet, 2022, arXiv:2204.03458, Sec. 3):
after each spatial attention block of the factorised 3D U-Net comes a temporal attention block that
attends over the T frames of each pixel, space folded into the batch ("(b h w) t c"), and uses
relative position embeddings so the network knows the order of the frames. For every head

    A = softmax(Q K^T / sqrt(d_head) + B + M),    B[i, j] = b_head[clip(j - i, -K, K)]

where B is a learned scalar bias per relative distance j - i (the form T5 uses, Raffel et al., 2020,
arXiv:1910.10683) and M is the frame mask: 0 where frame i may attend to frame j, -inf where not.

Why clipped distances and not T5's log-spaced buckets: the toy world's clips hold 8-16 frames, so
every distance up to K = 15 gets its own scalar (2K + 1 = 31 per head) and each is trained often;
buckets pay off only for sequences much longer than the number of parameters one would spend.
The bias depends on i - j only (a shift of the clip leaves it unchanged) and is not symmetric
(j - i = +1 and -1 are different scalars), so attention sees which way time runs.

Joint video-image training (VDM Sec. 3): a batch's last ``num_images`` frames are independent images
appended to each video. M lets each image attend only to itself and the video frames only among
themselves; every other layer of the U-Net works frame by frame, so the images stay isolated.
"""

from __future__ import annotations

import torch
from einops import rearrange
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


class RelativePositionBias(nn.Module):
    """One learned scalar per head and relative distance j - i in [-K, K]; (heads, T, T) additive bias."""

    def __init__(self, heads: int, max_distance: int = 15):
        super().__init__()
        self.heads = check_positive_int(heads, "heads")
        self.max_distance = check_positive_int(max_distance, "max_distance")
        # zero at init: no preference for any distance until training finds one
        self.relative_attention_bias = nn.Parameter(torch.zeros(heads, 2 * max_distance + 1))

    def forward(self, num_frames: int) -> torch.Tensor:
        """bias[h, i, j] = table[h, clip(j - i, -K, K) + K], shape (heads, T, T)."""
        check_positive_int(num_frames, "num_frames")
        positions = torch.arange(num_frames, device=self.relative_attention_bias.device)
        distance = rearrange(positions, "j -> 1 j") - rearrange(positions, "i -> i 1")  # j - i
        index = distance.clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.relative_attention_bias[:, index]


class TemporalAttention(nn.Module):
    r"""Residual self-attention over the frames of each pixel, with relative positions and a frame mask.

        tokens = LN(x) per pixel:  ((B H W), T, C)
        out = x + to_out(Attention(tokens, mask = B + M))

    LayerNorm normalises each token (one pixel of one frame) on its own, so nothing but the masked
    attention moves information between frames. ``to_out`` starts at zero: the block starts as the
    identity, and a U-Net built with it starts as the image model applied frame by frame.
    """

    def __init__(self, channels: int, heads: int, dim_head: int, max_distance: int = 15):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attention = Attention(channels, heads, dim_head)
        self.relative_position = RelativePositionBias(heads, max_distance)
        nn.init.zeros_(self.attention.to_out[0].weight)
        nn.init.zeros_(self.attention.to_out[0].bias)

    def attention_bias(self, num_frames: int, num_images: int = 0, device: torch.device | None = None) -> torch.Tensor:
        """B + M as one float mask (heads, T, T): the relative bias, -inf where attention is not allowed."""
        allowed = joint_video_image_mask(num_frames, num_images, device)
        return self.relative_position(num_frames).masked_fill(~allowed, float("-inf"))

    def forward(self, x: torch.Tensor, num_frames: int, *, num_images: int = 0) -> torch.Tensor:
        """x: frames folded into the batch ((B T), C, H, W) -> ((B T), C, H, W)."""
        check_positive_int(num_frames, "num_frames")
        if x.ndim != 4 or x.shape[0] % num_frames:
            raise ValueError(f"TemporalAttention takes features ((B T), C, H, W) with B*T divisible by "
                             f"num_frames={num_frames}, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        tokens = rearrange(x, "(b t) c h w -> (b h w) t c", t=num_frames)
        # the mask broadcasts over the (B H W) sequences: every pixel sees the same frame structure
        mask = self.attention_bias(num_frames, num_images, x.device).to(x.dtype)
        h = self.attention(self.norm(tokens), mask=mask)
        return x + rearrange(h, "(b h w) t c -> (b t) c h w", h=height, w=width)
