r"""Diffusion Transformers over spacetime patches (DiT, Peebles & Xie 2023; Sora; Latte, Ma et al. 2024; CogVideoX,
Yang et al. 2024): the U-Net replaced by a plain Transformer over the tokens of a video.

    x (B, C, T, H, W) --patchify + linear--> z (B, N, D),  N = (T/p_t)(H/p)(W/p)            (minivdm.nn.patches)
    z <- blocks(z | t, text)  ...  v = unpatchify(Linear(adaLN(z)))                             (B, C_out, T, H, W)

**adaLN-Zero on the diffusion time.** Every block is pre-normalised, and the LayerNorm's scale and shift come from the
time embedding e_t, with a gate on each residual branch:

    (gamma_1, beta_1, alpha_1, gamma_2, beta_2, alpha_2) = f(e_t)
    z <- z + alpha_1 * Attn(LN(z) (1 + gamma_1) + beta_1)
    z <- z + alpha_2 * FF(LN(z) (1 + gamma_2) + beta_2)

"Zero": a freshly trained DiT starts every gate alpha at zero (``zero_init_modulation``), so each block starts as the
identity. f is a per-block linear layer of SiLU(e_t) (DiT, CogVideoX), or one shared linear layer plus a learned
per-block table (PixArt's adaLN-single, Latte: ``scale_shift_table``).

**Text, two ways** (``DiTConfig.text_conditioning``):

* ``"cross"`` (Latte, PixArt): after self-attention, cross-attention from the video tokens to the text tokens, as in
  the U-Nets of chapters 2-4.
* ``"joint"`` (CogVideoX's expert transformer): the text tokens are *concatenated* to the video tokens, [c ; z], and
  one attention runs over both, so words and patches attend to each other in every layer. Text and video share the
  attention and feed-forward weights but each has its own adaLN modulation ("expert adaptive LayerNorm"):
  (gamma, beta, alpha) for z and (gamma', beta', alpha') for c, from the same e_t.

**Attention over spacetime** (``DiTConfig.attention``): ``"full"`` attends over all N tokens of the video at once
(CogVideoX's 3D attention: cost ~ N^2); ``"factorised"`` alternates a spatial block (each frame's tokens, with the text)
and a temporal block (each position's tokens across frames), as Latte does (cost ~ N (H W / p^2 + T)).

**Positions** (``DiTConfig.positions``, ``minivdm.nn.rotary``): ``"rotary"`` 3D RoPE on the queries and keys of the
video tokens (CogVideoX 5B); ``"sincos"`` added to the tokens: 3D (CogVideoX 2B) or 2D per frame plus a 1D code over
frames (Latte). Positions are computed from the token grid of each input, so one model takes any duration and size
its patches divide.

Parameter names are diffusers' (``CogVideoXTransformer3DModel``; ``LatteTransformer3DModel`` with ``pos_embed.`` read
as ``patch_embed.``), so published checkpoints load name for name (``minivdm.models.dit_checkpoints``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import nn

from minivdm.nn.attention import FEED_FORWARD_ACTIVATIONS, Attention, FeedForward
from minivdm.nn.embeddings import TimestepEmbedding, timestep_embedding
from minivdm.nn.patches import grid_positions, patchify, token_grid, unpatchify
from minivdm.nn.rotary import rotary_3d, rotary_identity, sincos_1d, sincos_2d, sincos_3d
from minivdm.validation import check_tensor, check_timesteps

TEXT_CONDITIONINGS = ("joint", "cross")
ATTENTIONS = ("full", "factorised")
POSITIONS = ("rotary", "sincos")
LATTE_TIME_CHANNELS = 256  # PixArt's sinusoidal width before the time MLP


@dataclass(frozen=True)
class DiTConfig:
    name: str = "tiny-dit"
    text_conditioning: str = "joint"      # "joint" ([c ; z], CogVideoX) or "cross" (cross-attention, Latte)
    attention: str = "full"               # "full" 3D attention or "factorised" spatial / temporal blocks (cross only)
    positions: str = "rotary"             # "rotary" (3D RoPE; joint only) or "sincos" (added to the tokens)
    in_channels: int = 3
    out_channels: int = 3
    patch_size: int = 4                   # p_h = p_w
    patch_size_t: int | None = 2          # p_t; None: one frame per patch, embedded by a 2D conv (CogVideoX 1.0, Latte)
    num_attention_heads: int = 4
    attention_head_dim: int = 32
    num_layers: int = 6
    text_embed_dim: int = 64              # width of the text encoder's states (T5-XXL: 4096)
    time_embed_dim: int = 128             # joint: width of e_t (CogVideoX: 512); cross: e_t has width D
    attention_bias: bool = True
    norm_elementwise_affine: bool = True
    norm_eps: float = 1e-5
    activation_fn: str = "gelu-approximate"
    # The published models' reference grid, in input pixels (latents) and frames: CogVideoX 1.0's rotary positions
    # are stretched over this grid; Latte's 2D positions are scaled by sample_size / 64 (diffusers' interpolation).
    sample_height: int = 32
    sample_width: int = 32
    spatial_interpolation_scale: float = 1.875  # CogVideoX's 3D sincos positions: h', w' divided by this
    temporal_interpolation_scale: float = 1.0

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def patch(self) -> tuple[int, int, int]:
        return (self.patch_size_t or 1, self.patch_size, self.patch_size)

    def __post_init__(self):
        for value, options, field in ((self.text_conditioning, TEXT_CONDITIONINGS, "text_conditioning"),
                                      (self.attention, ATTENTIONS, "attention"), (self.positions, POSITIONS, "positions"),
                                      (self.activation_fn, FEED_FORWARD_ACTIVATIONS, "activation_fn")):
            if value not in options:
                raise ValueError(f"DiTConfig.{field} must be one of {options}, got {value!r}")
        if self.text_conditioning == "joint" and self.attention == "factorised":
            raise ValueError("DiTConfig: attention='factorised' is implemented with text_conditioning='cross' (Latte); "
                             "the joint text tokens of CogVideoX take part in full 3D attention only")
        if self.text_conditioning == "cross" and self.positions == "rotary":
            raise ValueError("DiTConfig: positions='rotary' is implemented for text_conditioning='joint' (CogVideoX); "
                             "the cross-attention DiT (Latte) adds sincos positions")
        if self.text_conditioning == "cross" and self.patch_size_t not in (None, 1):
            raise ValueError("DiTConfig: the cross-attention DiT (Latte) patches each frame alone: patch_size_t must be "
                             f"None, got {self.patch_size_t}")
        if self.positions == "sincos" and self.patch_size_t not in (None, 1):
            raise ValueError("DiTConfig: sincos positions over frames are implemented for one frame per patch "
                             f"(patch_size_t None), got patch_size_t={self.patch_size_t}")
        if self.positions == "rotary" and self.attention_head_dim % 16:
            raise ValueError(f"DiTConfig: 3D rotary positions split a head's channels 4:6:6 over (t', h', w'); "
                             f"attention_head_dim must be a multiple of 16, got {self.attention_head_dim}")


class ExpertAdaLayerNormZero(nn.Module):
    """CogVideoX's expert adaptive LayerNorm: one LayerNorm, and from SiLU(e_t) a scale, shift and gate for the video
    tokens and another for the text tokens (diffusers' ``CogVideoXLayerNormZero``)."""

    def __init__(self, time_embed_dim: int, dim: int, elementwise_affine: bool, eps: float):
        super().__init__()
        self.linear = nn.Linear(time_embed_dim, 6 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=elementwise_affine)

    def forward(self, z: torch.Tensor, c: torch.Tensor, e_t: torch.Tensor):
        shift, scale, gate, c_shift, c_scale, c_gate = self.linear(nn.functional.silu(e_t))[:, None].chunk(6, dim=-1)
        return (self.norm(z) * (1 + scale) + shift, self.norm(c) * (1 + c_scale) + c_shift, gate, c_gate)


class JointTransformerBlock(nn.Module):
    """[c ; z] through one attention and one feed-forward, each under expert adaLN-Zero (CogVideoX's block)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        dim = config.inner_dim
        norm = (config.time_embed_dim, dim, config.norm_elementwise_affine, config.norm_eps)
        self.norm1 = ExpertAdaLayerNormZero(*norm)
        self.attn1 = Attention(dim, config.num_attention_heads, config.attention_head_dim, bias=config.attention_bias,
                               qk_norm=True)
        self.norm2 = ExpertAdaLayerNormZero(*norm)
        self.ff = FeedForward(dim, activation=config.activation_fn)

    def forward(self, z, c, e_t, rotary=None, mask=None):
        text = c.shape[1]
        z_n, c_n, gate, c_gate = self.norm1(z, c, e_t)
        attended = self.attn1(torch.cat([c_n, z_n], dim=1), rotary=rotary, mask=mask)
        z, c = z + gate * attended[:, text:], c + c_gate * attended[:, :text]
        z_n, c_n, gate, c_gate = self.norm2(z, c, e_t)
        fed = self.ff(torch.cat([c_n, z_n], dim=1))
        return z + gate * fed[:, text:], c + c_gate * fed[:, :text]


class CrossAttentionTransformerBlock(nn.Module):
    """Self-attention and feed-forward under adaLN-single (PixArt, Latte), with cross-attention to the text between
    them when ``cross_attention`` (Latte's spatial blocks; its temporal blocks have none)."""

    def __init__(self, config: DiTConfig, cross_attention: bool):
        super().__init__()
        dim, heads, dim_head = config.inner_dim, config.num_attention_heads, config.attention_head_dim
        affine, eps = config.norm_elementwise_affine, config.norm_eps
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=affine)
        self.attn1 = Attention(dim, heads, dim_head, bias=config.attention_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=affine)
        self.attn2 = (Attention(dim, heads, dim_head, cross_attention_dim=dim, bias=config.attention_bias)
                      if cross_attention else None)
        self.ff = FeedForward(dim, activation=config.activation_fn)
        self.scale_shift_table = nn.Parameter(torch.randn(6, dim) / dim ** 0.5)  # the block's own offset of f(e_t)

    def forward(self, z, modulation, text=None, text_mask=None):
        """z (B, N, D); modulation (B, 6 D): the shared adaLN-single output for each sequence; text (B, L, D)."""
        shift_1, scale_1, gate_1, shift_2, scale_2, gate_2 = (
            self.scale_shift_table[None] + modulation.unflatten(1, (6, -1))).chunk(6, dim=1)
        z = z + gate_1 * self.attn1(self.norm1(z) * (1 + scale_1) + shift_1)
        if self.attn2 is not None:
            mask = None if text_mask is None else text_mask[:, None, None, :]
            z = z + self.attn2(z, text, mask=mask)  # no norm before it: PixArt's and Latte's choice
        return z + gate_2 * self.ff(self.norm2(z) * (1 + scale_2) + shift_2)


class PatchEmbedding(nn.Module):
    """Tokens of a video: a linear map of each flattened spacetime patch (``proj``: a Linear for p_t > 1; for one frame
    per patch a Conv2d with kernel = stride = p, as the published checkpoints store it: the same map)."""

    def __init__(self, config: DiTConfig, with_text: bool):
        super().__init__()
        p_t, p, _ = config.patch
        if config.patch_size_t is None:
            self.proj = nn.Conv2d(config.in_channels, config.inner_dim, kernel_size=p, stride=p)
        else:
            self.proj = nn.Linear(config.in_channels * p_t * p * p, config.inner_dim)
        self.text_proj = nn.Linear(config.text_embed_dim, config.inner_dim) if with_text else None
        self.patch = config.patch

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        tokens = patchify(video, self.patch)  # (B, N, C p_t p p), values ordered (c, p_t, p, p) like proj's weight
        return nn.functional.linear(tokens, self.proj.weight.flatten(1), self.proj.bias)


class TimeModulation(nn.Module):
    """PixArt's adaLN-single (diffusers' ``AdaLayerNormSingle``): e_t = MLP(sinusoid(t)), and ONE linear layer
    SiLU(e_t) -> 6 D shared by every block (each block adds its own ``scale_shift_table``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.emb = nn.Module()
        self.emb.timestep_embedder = TimestepEmbedding(LATTE_TIME_CHANNELS, dim)
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(self, timestep: torch.Tensor):
        features = timestep_embedding(timestep, LATTE_TIME_CHANNELS).to(self.linear.weight.dtype)  # fp16/bf16 models
        e_t = self.emb.timestep_embedder(features)
        return self.linear(nn.functional.silu(e_t)), e_t


class CaptionProjection(nn.Module):
    """Text states -> the transformer's width: Linear, GELU (tanh), Linear (PixArt, Latte)."""

    def __init__(self, in_features: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.linear_2(nn.functional.gelu(self.linear_1(text), approximate="tanh"))


class VideoDiT(nn.Module):
    """``model(video, timestep, text, text_mask=None)``: video (B, C, T, H, W) (noisy latents or pixels), timestep (B,)
    on the 0..999 scale the time embedding was trained on, text (B, L, text_embed_dim) -> (B, out_channels, T, H, W)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        dim = config.inner_dim
        joint = config.text_conditioning == "joint"
        self.patch_embed = PatchEmbedding(config, with_text=joint)
        if joint:
            self.time_embedding = TimestepEmbedding(dim, config.time_embed_dim)
            self.transformer_blocks = nn.ModuleList(JointTransformerBlock(config) for _ in range(config.num_layers))
            self.norm_final = nn.LayerNorm(dim, config.norm_eps, config.norm_elementwise_affine)
            self.norm_out = nn.Module()  # diffusers' AdaLayerNorm: shift and scale from SiLU(e_t)
            self.norm_out.linear = nn.Linear(config.time_embed_dim, 2 * dim)
            self.norm_out.norm = nn.LayerNorm(dim, config.norm_eps, config.norm_elementwise_affine)
        else:
            self.adaln_single = TimeModulation(dim)
            self.caption_projection = CaptionProjection(config.text_embed_dim, dim)
            self.transformer_blocks = nn.ModuleList(CrossAttentionTransformerBlock(config, cross_attention=True)
                                                    for _ in range(config.num_layers))
            if config.attention == "factorised":
                self.temporal_transformer_blocks = nn.ModuleList(
                    CrossAttentionTransformerBlock(config, cross_attention=False) for _ in range(config.num_layers))
            self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
            self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim ** 0.5)
        p_t, p, _ = config.patch
        self.proj_out = nn.Linear(dim, p_t * p * p * config.out_channels)

    # -- positions ------------------------------------------------------------------------------------------------
    def rotary_positions(self, grid: tuple[int, int, int], device=None) -> torch.Tensor:
        """(N, 3) float (t', h', w') positions for RoPE. CogVideoX 1.0 (one frame per patch) stretches the grid over the
        region it covers in its reference grid (diffusers' ``get_resize_crop_region_for_grid``, 'linspace'); with
        p_t > 1 (CogVideoX 1.5, the toy DiT) positions are the token indices."""
        if self.config.patch_size_t is not None:
            return grid_positions(grid, device).float()
        frames, height, width = grid
        base_h, base_w = self.config.sample_height // self.config.patch_size, self.config.sample_width // self.config.patch_size
        (top, left), (bottom, right) = _crop_region((height, width), base_w, base_h)
        axes = (torch.linspace(0, frames * (frames - 1) / frames, frames, device=device),
                torch.linspace(top, bottom * (height - 1) / height, height, device=device),
                torch.linspace(left, right * (width - 1) / width, width, device=device))
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)

    def _latte_spatial_positions(self, height: int, width: int) -> torch.Tensor:
        base = self.config.sample_height // self.config.patch_size
        scale = max(self.config.sample_height // 64, 1)
        return sincos_2d(self.config.inner_dim, torch.arange(height) / (height / base) / scale,
                         torch.arange(width) / (width / base) / scale)

    # -- forward --------------------------------------------------------------------------------------------------
    def forward(self, video: torch.Tensor, timestep, text: torch.Tensor,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        config = self.config
        check_tensor(video, "video", ndim=5, layout="(B, C, T, H, W)")
        if video.shape[1] != config.in_channels:
            raise ValueError(f"video must be (B, C, T, H, W) with C = {config.in_channels} channels for this "
                             f"{config.name} DiT, got {tuple(video.shape)}")
        check_tensor(text, "text", ndim=3, layout="(B, L, text_embed_dim)")
        if text.shape[0] != video.shape[0] or text.shape[2] != config.text_embed_dim:
            raise ValueError(f"text must be (B, L, {config.text_embed_dim}) with B = {video.shape[0]}, "
                             f"got {tuple(text.shape)}")
        if text_mask is not None and (text_mask.dtype != torch.bool or text_mask.shape != text.shape[:2]):
            raise ValueError(f"text_mask must be a bool (B, L) = {tuple(text.shape[:2])} tensor, True for the tokens "
                             f"to attend to, got {text_mask.dtype} {tuple(text_mask.shape)}")
        timestep = check_timesteps(timestep, video.shape[0], video.device)
        grid = token_grid(*video.shape[2:], config.patch)
        if config.text_conditioning == "joint":
            z = self._joint(video, timestep, text, text_mask, grid)
        else:
            z = self._cross(video, timestep, text, text_mask, grid)
        return unpatchify(self.proj_out(z), grid, config.patch, channels_last=config.text_conditioning == "cross")

    def _joint(self, video, timestep, text, text_mask, grid):
        config, dim = self.config, self.config.inner_dim
        z = self.patch_embed(video)
        c = self.patch_embed.text_proj(text)
        e_t = self.time_embedding(timestep_embedding(timestep, dim).to(z.dtype))
        rotary = mask = None
        if config.positions == "sincos":
            z = z + _sincos_3d_cached(dim, grid, spatial_scale=config.spatial_interpolation_scale,
                                      temporal_scale=config.temporal_interpolation_scale).to(z)
        else:
            video_cos, video_sin = rotary_3d(config.attention_head_dim, self.rotary_positions(grid, z.device))
            text_cos, text_sin = rotary_identity(c.shape[1], config.attention_head_dim, z.device)
            rotary = (torch.cat([text_cos, video_cos]), torch.cat([text_sin, video_sin]))
        if text_mask is not None:  # padding text tokens are no one's keys
            keys = torch.cat([text_mask, text_mask.new_ones(z.shape[:2])], dim=1)
            mask = keys[:, None, None, :]
        for block in self.transformer_blocks:
            z, c = block(z, c, e_t, rotary, mask)
        shift, scale = self.norm_out.linear(nn.functional.silu(e_t))[:, None].chunk(2, dim=-1)
        return self.norm_out.norm(self.norm_final(z)) * (1 + scale) + shift

    def _cross(self, video, timestep, text, text_mask, grid):
        config = self.config
        frames, height, width = grid
        z = self.patch_embed(video) + repeat(self._latte_spatial_positions(height, width).to(video),
                                             "s d -> (t s) d", t=frames)
        modulation, e_t = self.adaln_single(timestep)
        c = self.caption_projection(text)
        temporal_positions = sincos_1d(config.inner_dim, torch.arange(frames, device=video.device)).to(z)
        if config.attention == "full":
            if frames > 1:
                z = z + repeat(temporal_positions, "t d -> (t s) d", s=height * width)
            for block in self.transformer_blocks:
                z = block(z, modulation, c, text_mask)
        else:
            batch = video.shape[0]
            z = rearrange(z, "b (t s) d -> (b t) s d", t=frames)
            per_frame = dict(modulation=repeat(modulation, "b m -> (b t) m", t=frames),
                             text=repeat(c, "b l d -> (b t) l d", t=frames),
                             text_mask=None if text_mask is None else repeat(text_mask, "b l -> (b t) l", t=frames))
            per_position = repeat(modulation, "b m -> (b s) m", s=height * width)
            for index, (spatial, temporal) in enumerate(zip(self.transformer_blocks, self.temporal_transformer_blocks)):
                z = spatial(z, **per_frame)
                z = rearrange(z, "(b t) s d -> (b s) t d", b=batch)
                if index == 0 and frames > 1:
                    z = z + temporal_positions
                z = temporal(z, per_position)
                z = rearrange(z, "(b s) t d -> (b t) s d", b=batch)
            z = rearrange(z, "(b t) s d -> b (t s) d", b=batch)
        shift, scale = (self.scale_shift_table[None] + e_t[:, None]).chunk(2, dim=1)
        return self.norm_out(z) * (1 + scale) + shift


@functools.lru_cache(maxsize=8)
def _sincos_3d_cached(dim: int, grid: tuple[int, int, int], **scales) -> torch.Tensor:
    """``sincos_3d`` computed once per (width, grid): CogVideoX 2B's table is 17,550 x 1,920 (read-only: added, never
    written to)."""
    return sincos_3d(dim, grid, **scales)


def _crop_region(grid: tuple[int, int], base_width: int, base_height: int):
    """The (top, left), (bottom, right) region a (h, w) token grid covers when fitted inside the reference grid
    (CogVideoX's rotary positions for sizes other than its reference size)."""
    height, width = grid
    if height / width > base_height / base_width:
        resize_height, resize_width = base_height, int(round(base_height / height * width))
    else:
        resize_width, resize_height = base_width, int(round(base_width / width * height))
    top, left = int(round((base_height - resize_height) / 2.0)), int(round((base_width - resize_width) / 2.0))
    return (top, left), (top + resize_height, left + resize_width)


def zero_init_modulation(model: VideoDiT) -> VideoDiT:
    """adaLN-Zero's initialisation for a model trained from scratch: every modulation layer's output and the output
    projection start at zero, so every block starts as the identity and the model predicts 0 (DiT, Sec. 3.2).
    adaLN-single blocks (cross) also start their ``scale_shift_table`` at zero (their gates are table + f(e_t); PixArt
    keeps it random, so its blocks are not the identity at init) and their ungated cross-attention's output projection
    at zero (as PixArt does)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and (name.endswith("norm1.linear") or name.endswith("norm2.linear")
                                              or name in ("norm_out.linear", "adaln_single.linear", "proj_out")):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        if isinstance(module, CrossAttentionTransformerBlock):
            nn.init.zeros_(module.scale_shift_table)
            if module.attn2 is not None:
                nn.init.zeros_(module.attn2.to_out[0].weight)
                nn.init.zeros_(module.attn2.to_out[0].bias)
    return model
