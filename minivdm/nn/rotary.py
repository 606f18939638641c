r"""Where a spacetime token sits: 3D rotary position embedding (CogVideoX) and sinusoidal spacetime positions (Latte,
CogVideoX 2B).

**Rotary (RoPE; Su et al. 2021, arXiv:2104.09864).** Queries and keys are rotated pair by pair by angles that grow with
the token's position, so that their dot product depends only on the *difference* of positions:

    R(p) q = (q_0 cos(p w_0) - q_1 sin(p w_0),  q_1 cos(p w_0) + q_0 sin(p w_0),  q_2 cos(p w_1) - ...)
    w_i = theta^(-2i / d),     <R(p) q, R(p') k> = <q, R(p' - p) k>

CogVideoX's 3D RoPE gives each axis its own share of a head's d channels: d/4 rotate with the frame t', 3d/8 with the
row h', 3d/8 with the column w' (``rotary_3d``). Text tokens carry no position: their rotation is the identity.

**Sinusoidal positions** (added to the tokens rather than rotating q and k):

    PE(p)_i = sin(p w_i),  PE(p)_{i + d/2} = cos(p w_i),   w_i = 10000^(-2i / d)

in 2D for a frame (half the channels from the column, half from the row; Latte, DiT) and in 3D (CogVideoX 2B: a quarter
from the frame, three quarters from the 2D spatial code). Learned positions are an ``nn.Parameter`` of the same shape.
"""

from __future__ import annotations

import torch

from minivdm.validation import check_tensor


def _check_even(dim: int, name: str, multiple: int = 2) -> None:
    if not isinstance(dim, int) or dim <= 0 or dim % multiple:
        raise ValueError(f"{name} must be a positive multiple of {multiple}, got {dim!r}")


def rotary_angles(dim: int, positions: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """(N,) positions -> (N, dim) angles p w_i, each w_i repeated for its pair of channels (2i, 2i + 1)."""
    _check_even(dim, "dim")
    frequencies = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim)
    return torch.outer(positions.float(), frequencies).repeat_interleave(2, dim=1)


def rotary_3d(head_dim: int, positions: torch.Tensor, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (N, head_dim), for tokens at ``positions`` (N, 3) = (t', h', w') (float positions allowed):
    the first head_dim/4 channels rotate with t', the next 3 head_dim/8 with h', the last 3 head_dim/8 with w'."""
    _check_even(head_dim, "head_dim", 16)
    check_tensor(positions, "positions", ndim=2, layout="(N, 3) (t', h', w')")
    if positions.shape[1] != 3:
        raise ValueError(f"positions must be (N, 3) (t', h', w'), got {tuple(positions.shape)}")
    dim_t, dim_hw = head_dim // 4, head_dim // 8 * 3
    angles = torch.cat([rotary_angles(dim_t, positions[:, 0], theta), rotary_angles(dim_hw, positions[:, 1], theta),
                        rotary_angles(dim_hw, positions[:, 2], theta)], dim=1)
    return angles.cos(), angles.sin()


def rotary_identity(count: int, head_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) that rotate by zero: for tokens without a position (CogVideoX's text tokens)."""
    return torch.ones(count, head_dim, device=device), torch.zeros(count, head_dim, device=device)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_{2i}, x_{2i+1}) of the last axis: x (..., N, d), cos and sin (N, d)."""
    if cos.shape != sin.shape or cos.shape != x.shape[-2:]:
        raise ValueError(f"cos and sin must be (N, d) = {tuple(x.shape[-2:])} for x of shape {tuple(x.shape)}, "
                         f"got {tuple(cos.shape)} and {tuple(sin.shape)}")
    even, odd = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack([-odd, even], dim=-1).flatten(-2)  # (-x_1, x_0, -x_3, x_2, ...)
    return (x.float() * cos + rotated * sin).to(x.dtype)


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(N,) positions -> (N, dim): [sin(p w_i) for i < dim/2, then cos(p w_i)], w_i = 10000^(-2i/dim)."""
    _check_even(dim, "dim")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2.0))
    angles = torch.outer(positions.double().reshape(-1), omega)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(dim: int, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """(H' W', dim) for the grid rows x columns (row-major): the first half of the channels codes the column, the
    second half the row (DiT's and diffusers' order)."""
    _check_even(dim, "dim", 4)
    row, column = torch.meshgrid(rows.double(), columns.double(), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, column.reshape(-1)), sincos_1d(dim // 2, row.reshape(-1))], dim=1)


def sincos_3d(dim: int, grid: tuple[int, int, int], *, spatial_scale: float = 1.0,
              temporal_scale: float = 1.0) -> torch.Tensor:
    """(T' H' W', dim) for a token grid (T', H', W') in token order: dim/4 channels code the frame, 3 dim/4 the 2D
    position (CogVideoX 2B). Positions are divided by the scales (CogVideoX: spatial 1.875)."""
    _check_even(dim, "dim", 4)
    frames, height, width = grid
    spatial = sincos_2d(3 * dim // 4, torch.arange(height) / spatial_scale, torch.arange(width) / spatial_scale)
    temporal = sincos_1d(dim // 4, torch.arange(frames) / temporal_scale)
    return torch.cat([temporal[:, None].expand(-1, height * width, -1),
                      spatial[None].expand(frames, -1, -1)], dim=-1).reshape(frames * height * width, dim)
