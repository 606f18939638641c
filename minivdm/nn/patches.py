r"""Spacetime patches: a video as a sequence of tokens (Sora's "spacetime patches"; ViViT's tubelets; CogVideoX, Latte).

A video x of shape (B, C, T, H, W) is cut into non-overlapping boxes of p_t frames x p_h x p_w pixels, and each box,
flattened, is one token:

    tokens[b, (t' h' w'), (c i j k)] = x[b, c, t' p_t + i, h' p_h + j, w' p_w + k]

There are N = (T / p_t)(H / p_h)(W / p_w) tokens of length C p_t p_h p_w, in (t', h', w') order (frame-major, then
rows, then columns), and ``unpatchify`` is the exact inverse. A linear layer on the tokens is the "patch embedding"
(a strided convolution with kernel = stride = the patch is the same map).

**Packing** (NaViT, Dehghani et al. 2023; Sora trains on videos at their native size and duration): the tokens of
videos of *different* sizes and durations are laid end to end in one sequence. Each token keeps its (t', h', w')
position in its own video, and an attention mask lets a token see only the tokens of its own video, so one forward
pass over the packed sequence does what separate passes over each video would, without padding any video to the
largest size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange

from minivdm.validation import check_tensor

Patch = tuple[int, int, int]  # (p_t, p_h, p_w)
Grid = tuple[int, int, int]   # (T', H', W'): tokens along time, rows, columns


def _check_patch(patch) -> Patch:
    if (not isinstance(patch, (tuple, list)) or len(patch) != 3
            or not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in patch)):
        raise ValueError(f"patch must be (p_t, p_h, p_w), three positive ints, got {patch!r}")
    return tuple(patch)


def token_grid(frames: int, height: int, width: int, patch: Patch) -> Grid:
    """(T', H', W') = (T / p_t, H / p_h, W / p_w); every size must be a multiple of its patch size."""
    p_t, p_h, p_w = _check_patch(patch)
    for size, p, axis in ((frames, p_t, "T (frames)"), (height, p_h, "H"), (width, p_w, "W")):
        if size % p:
            raise ValueError(f"{axis} = {size} is not a multiple of its patch size {p} "
                             f"(patch (p_t, p_h, p_w) = {patch}): crop or pad the video first")
    return frames // p_t, height // p_h, width // p_w


def patchify(video: torch.Tensor, patch: Patch, *, channels_last: bool = False) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, N, C p_t p_h p_w) tokens in (t', h', w') order. Within a token the values are ordered
    (c, i, j, k), channel first; ``channels_last`` orders them (i, j, k, c) (Latte's output projection)."""
    check_tensor(video, "video", ndim=5, layout="(B, C, T, H, W)")
    token_grid(*video.shape[2:], patch)
    p_t, p_h, p_w = patch
    inner = "pt ph pw c" if channels_last else "c pt ph pw"
    return rearrange(video, f"b c (t pt) (h ph) (w pw) -> b (t h w) ({inner})", pt=p_t, ph=p_h, pw=p_w)


def unpatchify(tokens: torch.Tensor, grid: Grid, patch: Patch, *, channels_last: bool = False) -> torch.Tensor:
    """(B, N, C p_t p_h p_w) -> (B, C, T, H, W): the inverse of ``patchify`` for a video of token grid ``grid``."""
    check_tensor(tokens, "tokens", ndim=3, layout="(B, N, C * p_t * p_h * p_w)")
    p_t, p_h, p_w = _check_patch(patch)
    t, h, w = grid
    if tokens.shape[1] != t * h * w:
        raise ValueError(f"tokens hold {tokens.shape[1]} tokens but the grid (T', H', W') = {grid} has {t * h * w}")
    if tokens.shape[2] % (p_t * p_h * p_w):
        raise ValueError(f"token length {tokens.shape[2]} is not a multiple of the patch volume "
                         f"{p_t} x {p_h} x {p_w} = {p_t * p_h * p_w}")
    inner = "pt ph pw c" if channels_last else "c pt ph pw"
    return rearrange(tokens, f"b (t h w) ({inner}) -> b c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=p_t, ph=p_h, pw=p_w)


def grid_positions(grid: Grid, device: torch.device | str | None = None) -> torch.Tensor:
    """(N, 3) long: the (t', h', w') position of every token of a video with token grid ``grid``, in token order."""
    t, h, w = grid
    axes = torch.meshgrid(torch.arange(t, device=device), torch.arange(h, device=device),
                          torch.arange(w, device=device), indexing="ij")
    return torch.stack(axes, dim=-1).reshape(-1, 3)


@dataclass
class PackedVideos:
    """Videos of different sizes and durations as one token sequence (NaViT-style packing).

    tokens (L, C p_t p_h p_w); positions (L, 3) long, each token's (t', h', w') in its own video; segments (L,) long,
    the index of the video a token belongs to (-1 for padding at the end); grids, one (T', H', W') per video."""

    tokens: torch.Tensor
    positions: torch.Tensor
    segments: torch.Tensor
    grids: list[Grid]
    patch: Patch
    channels_last: bool = False

    def attention_mask(self) -> torch.Tensor:
        """(L, L) bool, True where token i may attend to token j: both in the same video (block diagonal).
        Padding attends to padding only, so no row is empty (an empty row would make softmax NaN)."""
        return self.segments[:, None] == self.segments[None, :]


def pack(videos: list[torch.Tensor], patch: Patch, *, pad_to: int | None = None,
         channels_last: bool = False) -> PackedVideos:
    """Patchify each (C, T_i, H_i, W_i) video and lay their tokens end to end (padded with zeros to ``pad_to``
    tokens if given)."""
    if not isinstance(videos, (list, tuple)) or not videos:
        raise ValueError("videos must be a non-empty list of (C, T, H, W) tensors")
    patch = _check_patch(patch)
    tokens, positions, segments, grids = [], [], [], []
    for index, video in enumerate(videos):
        check_tensor(video, f"videos[{index}]", ndim=4, layout="(C, T, H, W)")
        if video.shape[0] != videos[0].shape[0]:
            raise ValueError(f"every video must have the same channels C; videos[0] has {videos[0].shape[0]}, "
                             f"videos[{index}] has {video.shape[0]}")
        grid = token_grid(*video.shape[1:], patch)
        tokens.append(patchify(video[None], patch, channels_last=channels_last)[0])
        positions.append(grid_positions(grid, video.device))
        segments.append(torch.full((tokens[-1].shape[0],), index, dtype=torch.long, device=video.device))
        grids.append(grid)
    tokens, positions, segments = torch.cat(tokens), torch.cat(positions), torch.cat(segments)
    if pad_to is not None:
        if pad_to < len(tokens):
            raise ValueError(f"pad_to = {pad_to} is shorter than the {len(tokens)} tokens of the videos")
        extra = pad_to - len(tokens)
        tokens = torch.cat([tokens, tokens.new_zeros(extra, tokens.shape[1])])
        positions = torch.cat([positions, positions.new_zeros(extra, 3)])
        segments = torch.cat([segments, segments.new_full((extra,), -1)])
    return PackedVideos(tokens, positions, segments, grids, patch, channels_last)


def unpack(tokens: torch.Tensor, packed: PackedVideos) -> list[torch.Tensor]:
    """(L, F) tokens laid out as ``packed`` (e.g. a model's output on it) -> the list of (C, T_i, H_i, W_i) videos."""
    check_tensor(tokens, "tokens", ndim=2, layout="(L, C * p_t * p_h * p_w)")
    if tokens.shape[0] != packed.segments.shape[0]:
        raise ValueError(f"tokens hold {tokens.shape[0]} tokens, the packed sequence {packed.segments.shape[0]}")
    videos = []
    for index, grid in enumerate(packed.grids):
        mine = tokens[packed.segments == index]
        videos.append(unpatchify(mine[None], grid, packed.patch, channels_last=packed.channels_last)[0])
    return videos
