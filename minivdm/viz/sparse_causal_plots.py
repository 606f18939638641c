r"""Where Tune-A-Video's sparse-causal attention looks (chapter 8).

* ``sparse_causal_weights``: for one query token of frame i, the softmax weights (mean over heads) that an
  ST-Attn layer puts on the tokens of its two key frames, frame 1 and frame i-1, from the layer's real input.
* ``plot_sparse_causal_attention``: the three frames involved and the two weight maps, the query marked.

Pure functions: computations return tensors, plots return matplotlib Figures that the tutorial's widgets display.
"""

from __future__ import annotations

import torch
from einops import rearrange
from matplotlib.figure import Figure

from minivdm.nn.sparse_causal_attention import SparseCausalAttention, previous_frame_index, sparse_causal_context


def sparse_causal_weights(attention: SparseCausalAttention, tokens: torch.Tensor, num_frames: int, query_frame: int,
                          query_token: int) -> torch.Tensor:
    """(2, n): the weights of query ``query_token`` of frame ``query_frame`` (0-based) of the first video in
    ``tokens`` ((B m), n, d), on frame 0's tokens (row 0) and frame i-1's (row 1); they sum to 1 together."""
    if tokens.ndim != 3 or tokens.shape[0] % num_frames:
        raise ValueError(f"tokens must be ((B * frames), N, D) with frames = {num_frames}, got {tuple(tokens.shape)}")
    if not 0 <= query_frame < num_frames or not 0 <= query_token < tokens.shape[1]:
        raise ValueError(f"query_frame must be in [0, {num_frames - 1}] and query_token in [0, {tokens.shape[1] - 1}], "
                         f"got {query_frame} and {query_token}")
    with torch.no_grad():
        context = sparse_causal_context(tokens[:num_frames], num_frames)[query_frame]  # (2n, d): [frame 1; frame i-1]
        q = rearrange(attention.to_q(tokens[query_frame, query_token:query_token + 1]), "n (h d) -> h n d",
                      h=attention.heads)
        k = rearrange(attention.to_k(context), "n (h d) -> h n d", h=attention.heads)
        weights = torch.softmax(q.float() @ k.float().transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1).mean(0)[0]
    return weights.reshape(2, -1).cpu()


def plot_sparse_causal_attention(video: torch.Tensor, weights: torch.Tensor, query_frame: int,
                                 query_yx: tuple[float, float], *, title: str) -> Figure:
    """``video`` (3, T, H, W) in [-1, 1]; ``weights`` (2, n) from ``sparse_causal_weights`` (n a square number);
    ``query_yx`` the query's position in video pixels."""
    side = int(round(weights.shape[1] ** 0.5))
    maps = weights.reshape(2, side, side)
    previous = int(previous_frame_index(video.shape[1])[query_frame])
    figure = Figure(figsize=(13, 3))
    axes = figure.subplots(1, 5)
    shown = [(0, "frame 1 (key)"), (previous, f"frame {previous + 1} (key)"), (query_frame, f"frame {query_frame + 1} (query x)")]
    for axis, (frame, label) in zip(axes[:3], shown):
        axis.imshow(((video[:, frame].permute(1, 2, 0).float() + 1) / 2).clamp(0, 1))
        axis.set_title(label)
    axes[2].scatter([query_yx[1] - 0.5], [query_yx[0] - 0.5], marker="x", color="white", s=60)
    for axis, weight_map, label in zip(axes[3:], maps, ("weights on frame 1", f"weights on frame {previous + 1}")):
        axis.imshow(weight_map, cmap="magma", vmin=0, vmax=float(maps.max()))
        axis.set_title(f"{label} (sum {weight_map.sum():.2f})")
    for axis in axes:
        axis.set_xticks([]), axis.set_yticks([])
    figure.suptitle(title)
    figure.tight_layout()
    return figure
