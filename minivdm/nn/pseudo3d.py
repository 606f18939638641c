r"""Make-A-Video's pseudo-3D layers (Singer et al., 2022, arXiv:2209.14792, Sec. 3.2): a pretrained image
model's 2D convolutions and attention, each followed by a new 1D layer along time.

    Conv_P3D(h) := Conv_1D(Conv_2D(h) o T) o T
    ATTN_P3D(h) := unflatten(ATTN_1D(ATTN_2D(flatten(h)) o T) o T)

h is a video (B, C, T, H, W); o T swaps the time and space axes, so Conv_2D / ATTN_2D see every frame
on its own (the image model, unchanged) and Conv_1D / ATTN_1D see every pixel's sequence of T values.
Full 3D convolution and attention over all T*H*W positions would cost far more; the factorised pair
sees a 3D neighbourhood in two steps.

Both new layers start as the identity, so a freshly inflated model is the image model run on each
frame, and training on unlabeled video starts from there: Conv_1D's kernel is the identity on its
centre tap (zero on the neighbours, zero bias), ATTN_1D is residual with a zero output projection.

Here the frames travel on the batch axis, ((B T), C, H, W), as they do inside an inflated U-Net; the
layers take T from the U-Net (``minivdm.nn.frames``). ``Pseudo3DConv`` is a ``Conv2d`` and
``Pseudo3DAttention`` a ``Transformer2DModel``, with the new layer as a child called ``temporal``: the
image model's weights keep their names (``conv1.weight``), the new ones are ``conv1.temporal.weight``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from minivdm.nn.attention import Attention
from minivdm.nn.frames import FrameAware
from minivdm.nn.transformer_2d import Transformer2DModel


def _inflated(like, image_layer: nn.Module) -> nn.Module:
    """``like(image_layer)`` built without a random init, given every weight of the image layer (same device and
    dtype), its new ``temporal`` child reset to the identity."""
    weight = next(image_layer.parameters())
    with torch.device("meta"):
        inflated = like(image_layer)
    inflated.to_empty(device=weight.device).to(weight.dtype)
    missing, unexpected = inflated.load_state_dict(image_layer.state_dict(), strict=False)
    if unexpected or any(not key.startswith("temporal.") for key in missing):
        raise ValueError(f"the image layer's weights do not fit its pseudo-3D form: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    inflated.reset_temporal_to_identity()
    return inflated.train(image_layer.training)


class TemporalConv1d(nn.Conv1d):
    """Conv_1D: a convolution along time at every pixel (kernel 3, zero padding at the clip's ends),
    initialised as the identity."""

    def __init__(self, channels: int, kernel_size: int = 3):
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (centred on the frame), got {kernel_size}")
        super().__init__(channels, channels, kernel_size, padding=kernel_size // 2)
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:, :, self.kernel_size[0] // 2] = torch.eye(self.out_channels)
            self.bias.zero_()

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: ((B T), C, H, W) -> ((B T), C, H, W)."""
        height, width = x.shape[-2:]
        pixels = rearrange(x, "(b t) c h w -> (b h w) c t", t=num_frames)
        return rearrange(super().forward(pixels), "(b h w) c t -> (b t) c h w", h=height, w=width)


class TemporalAttention(nn.Module):
    """ATTN_1D: residual self-attention among the T frames of each pixel, h + Attn(LN(h)); the output
    projection starts at zero. No positional embedding: the temporal convolutions know the frame order."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.norm = nn.LayerNorm(channels)
        self.attention = Attention(channels, heads, channels // heads)
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        """Fresh LayerNorm and projections (drawn from torch's global generator), the output projection zero."""
        self.norm.reset_parameters()
        for linear in (self.attention.to_q, self.attention.to_k, self.attention.to_v, self.attention.to_out[0]):
            linear.reset_parameters()
        nn.init.zeros_(self.attention.to_out[0].weight)
        nn.init.zeros_(self.attention.to_out[0].bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: ((B T), C, H, W) -> ((B T), C, H, W)."""
        height, width = x.shape[-2:]
        tokens = rearrange(x, "(b t) c h w -> (b h w) t c", t=num_frames)
        tokens = self.attention(self.norm(tokens)) + tokens
        return rearrange(tokens, "(b h w) t c -> (b t) c h w", h=height, w=width)


class Pseudo3DConv(FrameAware, nn.Conv2d):
    """Conv_P3D: the image model's 2D convolution on each frame, then Conv_1D along time."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.temporal = TemporalConv1d(self.out_channels)

    @classmethod
    def like(cls, conv: nn.Conv2d) -> "Pseudo3DConv":
        """A new pseudo-3D conv of ``conv``'s shape (its own fresh weights, on the current default device)."""
        if type(conv) is not nn.Conv2d:
            raise TypeError(f"a pseudo-3D conv inflates an image model's nn.Conv2d, got {type(conv).__name__}")
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                   conv.groups, conv.bias is not None, conv.padding_mode)

    @classmethod
    def inflate(cls, conv: nn.Conv2d) -> "Pseudo3DConv":
        """A pseudo-3D conv holding ``conv``'s weights (same device and dtype), Conv_1D the identity."""
        return _inflated(cls.like, conv)

    def reset_temporal_to_identity(self) -> None:
        self.temporal.reset_to_identity()

    def forward(self, x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """x: ((B T), C_in, H, W) -> ((B T), C_out, H', W')."""
        frames = self.frames(x.shape[0], num_frames)
        return self.temporal(super().forward(x), frames)


class Pseudo3DAttention(FrameAware, Transformer2DModel):
    """ATTN_P3D: the image model's spatial transformer on each frame (self-attention among its pixels,
    cross-attention to the text), then ATTN_1D among each pixel's frames."""

    def __init__(self, heads: int, dim_head: int, in_channels: int, *args, **kwargs):
        super().__init__(heads, dim_head, in_channels, *args, **kwargs)
        self.temporal = TemporalAttention(in_channels, heads)

    @classmethod
    def like(cls, transformer: Transformer2DModel) -> "Pseudo3DAttention":
        """A new pseudo-3D attention of ``transformer``'s shape (fresh weights, on the current default device)."""
        if type(transformer) is not Transformer2DModel:
            raise TypeError(f"a pseudo-3D attention inflates an image model's Transformer2DModel, got "
                            f"{type(transformer).__name__}")
        block = transformer.transformer_blocks[0]
        heads, inner = block.attn1.heads, block.attn1.to_q.out_features
        return cls(heads, inner // heads, transformer.norm.num_channels, len(transformer.transformer_blocks),
                   block.attn2.to_k.in_features, transformer.norm.num_groups, transformer.use_linear_projection,
                   block.attn1.upcast)

    @classmethod
    def inflate(cls, transformer: Transformer2DModel) -> "Pseudo3DAttention":
        """A pseudo-3D attention holding ``transformer``'s weights (same device and dtype), ATTN_1D the identity."""
        return _inflated(cls.like, transformer)

    def reset_temporal_to_identity(self) -> None:
        self.temporal.reset_to_identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, num_frames: int | None = None) -> torch.Tensor:
        """x: ((B T), C, H, W), context ((B T), L, D) -> ((B T), C, H, W)."""
        frames = self.frames(x.shape[0], num_frames)
        return self.temporal(super().forward(x, context), frames)
