r"""Multi-head attention (Vaswani et al., 2017, arXiv:1706.03762) as diffusion U-Nets use it.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_head)) V,   Q = W_q x,  K = W_k c,  V = W_v c

Self-attention takes the context c = x; cross-attention takes c = text embeddings (Stable Diffusion
conditions on CLIP's hidden states this way). The heads run in one call to
``torch.nn.functional.scaled_dot_product_attention`` (fused kernels where available).

Two options the video transformers use (``minivdm.models.dit``): ``qk_norm`` normalises each head's queries and
keys with a LayerNorm before the dot product (CogVideoX: it keeps the logits bounded in a deep model), and
``rotary=(cos, sin)`` rotates queries and keys by their tokens' positions (``minivdm.nn.rotary``).

Parameter names (to_q, to_k, to_v, to_out.0) follow diffusers' ``Attention``, so published
checkpoints load key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from minivdm.nn.rotary import apply_rotary


class Attention(nn.Module):
    def __init__(self, query_dim: int, heads: int, dim_head: int, cross_attention_dim: int | None = None,
                 dropout: float = 0.0, bias: bool = False, upcast: bool = False, qk_norm: bool = False,
                 out_bias: bool = True):
        super().__init__()
        inner_dim = heads * dim_head
        context_dim = cross_attention_dim or query_dim
        self.heads = heads
        self.upcast = upcast  # SD 2.1 computes attention in float32 to avoid fp16 overflow
        self.to_q = nn.Linear(query_dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim, bias=out_bias), nn.Dropout(dropout)])
        if qk_norm:  # diffusers' qk_norm="layer_norm" (CogVideoX)
            self.norm_q = nn.LayerNorm(dim_head, eps=1e-6)
            self.norm_k = nn.LayerNorm(dim_head, eps=1e-6)
        else:
            self.norm_q = self.norm_k = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """x: (B, N, query_dim); context: (B, M, context_dim) or None for self-attention;
        mask: boolean, broadcastable to (B, heads, N, M), True where attention is allowed;
        rotary: (cos, sin), each (N, dim_head), the positions of x's tokens (self-attention only)."""
        if rotary is not None and context is not None:
            raise ValueError("rotary positions rotate the queries and keys of self-attention; "
                             "cross-attention to a context has no shared positions")
        context = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (rearrange(tensor, "b n (h d) -> b h n d", h=self.heads) for tensor in (q, k, v))
        if self.norm_q is not None:
            q, k = self.norm_q(q), self.norm_k(k)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        dtype = q.dtype
        if self.upcast:
            q, k, v = q.float(), k.float(), v.float()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).to(dtype)
        out = rearrange(out, "b h n d -> b n (h d)")
        return self.to_out[1](self.to_out[0](out))


class GEGLU(nn.Module):
    """Gated GELU (Shazeer, 2020): a linear layer to 2 x dim_out, one half gating the other."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        # hidden * gelu(gate), multiplied in place into gelu's fresh output: one wide buffer fewer
        # (autograd allows it: gelu's backward needs its input, not its output)
        return F.gelu(gate).mul_(hidden)


class GELU(nn.Module):
    """A linear layer then GELU (the tanh approximation where ``approximate="tanh"``: DiT, PixArt, CogVideoX)."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none"):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate=self.approximate)


FEED_FORWARD_ACTIVATIONS = ("geglu", "gelu", "gelu-approximate")


class FeedForward(nn.Module):
    """activation -> dropout -> linear, with a 4x wider inner layer (names follow diffusers: net.0, net.2).
    ``activation``: "geglu" (Stable Diffusion), "gelu" or "gelu-approximate" (the video transformers)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0, activation: str = "geglu"):
        super().__init__()
        inner_dim = dim * mult
        if activation not in FEED_FORWARD_ACTIVATIONS:
            raise ValueError(f"activation must be one of {FEED_FORWARD_ACTIVATIONS}, got {activation!r}")
        first = (GEGLU(dim, inner_dim) if activation == "geglu"
                 else GELU(dim, inner_dim, approximate="tanh" if activation == "gelu-approximate" else "none"))
        self.net = nn.ModuleList([first, nn.Dropout(dropout), nn.Linear(inner_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x
