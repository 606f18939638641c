r"""I2VGen-XL's video U-Net (Zhang et al., 2023, "I2VGen-XL: High-Quality Image-to-Video Synthesis via Cascaded
Diffusion Models", arXiv:2311.04145), built from minivdm's blocks.

I2VGen-XL is ModelScope's 3D U-Net (``minivdm.models.unet_3d_condition``: ResNet, temporal conv, spatial
transformer, temporal attention at every layer; ``transformer_in`` after ``conv_in``) turned into an image-to-video
model. The still image x_0 that the clip starts from enters four ways, and the frame rate a fifth:

    F_theta([z_t ; E_t(P(z_img))], t, fps, c),     c = [c_text ; G(z_img^(1)) ; W c_clip]

* the image's **VAE latent** z_img (B, 4, T, H, W) goes through a small encoder: three 3x3 convolutions on each
  frame (``image_latents_proj_in``, P), then self-attention and an MLP over the T frames of each pixel
  (``image_latents_temporal_encoder``, E_t). The result is **concatenated to the noisy latent** z_t on the channel
  axis, so ``conv_in`` takes 2 x in_channels.
* the first frame of that latent, z_img^(1), becomes a **grid of context tokens**: convolutions, an adaptive
  average pool to 32 x 32 and two stride-2 convolutions (``image_latents_context_embedding``, G) give an 8 x 8 grid
  of cross_attention_dim-wide tokens: 64 tokens of the image's layout.
* the image's **CLIP embedding** c_clip (B, D) is projected by an MLP (``context_embedding``, W) to in_channels
  tokens of width D.
* the text tokens c_text (B, L, D), the 64 image-latent tokens and the in_channels CLIP tokens are **concatenated**
  (in that order, diffusers') into the context c of every spatial cross-attention. Cross-attention has no positions
  over its keys, so the order changes nothing the model computes; it is kept to match diffusers' tensors.
* the **frame rate** is embedded like the timestep and added to it: emb = MLP_t(PE(t)) + MLP_fps(PE(fps)).

Parameter names are diffusers' ``I2VGenXLUNet`` (fps_embedding.0, image_latents_proj_in.2,
image_latents_temporal_encoder.attn1.to_q, down_blocks.0.temp_convs.0.conv1.0 ...), so a published state dict loads
key for key (``load_i2vgen_xl_unet``). As in ModelScope's config, ``attention_head_dim`` is the width of a head (64):
a block with C channels has C // 64 heads; ``transformer_in`` has 8. diffusers overwrites its ``num_attention_heads``
argument with ``attention_head_dim``; we accept it only where it says the same (or is None).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import nn

from minivdm.models.diffusers_format import (config_from_diffusers, config_to_diffusers, from_pretrained,
                                             pop_sample_size)
from minivdm.models.unet_3d_condition import (
    ATTENTION_DOWN_3D,
    ATTENTION_UP_3D,
    PLAIN_DOWN_3D,
    PLAIN_UP_3D,
    TRANSFORMER_IN_HEADS,
    UNet3DConditionConfig,
    UNetDownBlock3D,
    UNetMidBlock3D,
    UNetUpBlock3D,
    frames_down_mid_up,
)
from minivdm.nn.attention import Attention, FeedForward
from minivdm.nn.embeddings import TimestepEmbedding, timestep_embedding
from minivdm.nn.temporal import TransformerTemporalModel
from minivdm.validation import VIDEO_LAYOUT, check_matches_weights, check_tensor, check_timesteps, check_video

CLASS_NAME = "I2VGenXLUNet"
LATENT_CHANNELS = 4  # diffusers fixes the image latent's channels (the VAE's 4) in image_latents_proj_in
CONTEXT_GRID = 32  # the image latent is pooled to 32 x 32, then halved twice: an 8 x 8 grid of context tokens
IMAGE_ENCODER_HEADS = 2  # heads of the image latent's temporal encoder, each in_channels wide


class ImageLatentTemporalEncoder(nn.Module):
    r"""Self-attention over the T frames of each pixel of the image latent, then an MLP (diffusers'
    ``I2VGenXLTransformerTemporalEncoder``):

        h = x + SelfAttn(LN(x));    out = h + FF(h)        (no norm before the MLP, as in I2VGen-XL)
    """

    def __init__(self, dim: int, heads: int = IMAGE_ENCODER_HEADS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head=dim, bias=False, out_bias=True)
        self.ff = FeedForward(dim, mult=4, activation="gelu")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: ((B H W), T, dim) -> ((B H W), T, dim)."""
        h = self.attn1(self.norm1(tokens)) + tokens
        return self.ff(h) + h


@dataclass(frozen=True)
class I2VGenXLUNetConfig:
    """Field names and defaults are diffusers' ``I2VGenXLUNet`` arguments, which are the published
    ali-vilab/i2vgen-xl U-Net (``minivdm/configs/i2vgen_xl.py``).

    ``attention_head_dim`` is one head width for every block (a config.json list of one value throughout is read as
    it). ``num_attention_heads`` is ignored by diffusers (overwritten by ``attention_head_dim``): it must be None or
    equal to ``attention_head_dim``. ``sample_size`` changes nothing the U-Net computes."""

    name: str = "i2vgen-xl"
    sample_size: int | None = None
    in_channels: int = 4
    out_channels: int = 4
    down_block_types: tuple[str, ...] = (ATTENTION_DOWN_3D, ATTENTION_DOWN_3D, ATTENTION_DOWN_3D, PLAIN_DOWN_3D)
    up_block_types: tuple[str, ...] = (PLAIN_UP_3D, ATTENTION_UP_3D, ATTENTION_UP_3D, ATTENTION_UP_3D)
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    cross_attention_dim: int = 1024
    attention_head_dim: int = 64
    num_attention_heads: int | None = None

    def __post_init__(self):
        if self.num_attention_heads not in (None, self.attention_head_dim):
            raise ValueError(f"num_attention_heads={self.num_attention_heads!r}: diffusers' {CLASS_NAME} ignores it "
                             f"and uses attention_head_dim={self.attention_head_dim} (the width of a head); "
                             f"minivdm accepts it only as None or equal to attention_head_dim")
        if not len(self.block_out_channels) == len(self.down_block_types) == len(self.up_block_types):
            raise ValueError(f"block_out_channels, down_block_types and up_block_types need one entry per level, "
                             f"got {self.block_out_channels}, {self.down_block_types}, {self.up_block_types}")
        for key, allowed in (("down_block_types", (ATTENTION_DOWN_3D, PLAIN_DOWN_3D)),
                             ("up_block_types", (ATTENTION_UP_3D, PLAIN_UP_3D))):
            unknown = [kind for kind in getattr(self, key) if kind not in allowed]
            if unknown:
                raise ValueError(f"{key} has {unknown}; minivdm's {CLASS_NAME} builds only {list(allowed)}")
        if any(channels % self.attention_head_dim for channels in self.block_out_channels):
            raise ValueError(f"every block_out_channels entry must be a multiple of "
                             f"attention_head_dim={self.attention_head_dim}, got {self.block_out_channels}")

    def blocks_config(self) -> UNet3DConditionConfig:
        """The ModelScope block settings these layers share (I2VGen-XL's blocks are diffusers' UNet3D blocks)."""
        return UNet3DConditionConfig(
            name=f"{self.name} blocks", in_channels=self.in_channels, out_channels=self.out_channels,
            block_out_channels=self.block_out_channels, down_block_types=self.down_block_types,
            up_block_types=self.up_block_types, layers_per_block=self.layers_per_block,
            attention_head_dim=self.attention_head_dim, cross_attention_dim=self.cross_attention_dim,
            norm_num_groups=self.norm_num_groups, norm_eps=1e-5)

    @classmethod
    def from_diffusers(cls, config: dict, name: str = "loaded") -> "I2VGenXLUNetConfig":
        """Read a diffusers unet/config.json dict: every key honoured or refused by name."""
        if not isinstance(config, dict):
            raise TypeError(f"a {CLASS_NAME} config must be a dict (config.json), got {type(config).__name__}")
        config = dict(config)
        if "norm_num_groups" in config and config["norm_num_groups"] is None:
            raise ValueError(f"config has norm_num_groups=None; minivdm's {CLASS_NAME} needs GroupNorm groups")
        # two keys whose default is None, read here (our field-type check compares with the default's type)
        sample_size = pop_sample_size(config, CLASS_NAME)
        heads = config.pop("num_attention_heads", None)
        if isinstance(heads, (list, tuple)) and len(set(heads)) == 1:
            heads = heads[0]
        if heads is not None and (isinstance(heads, bool) or not isinstance(heads, int)):
            raise ValueError(f"config has num_attention_heads={heads!r}; minivdm's {CLASS_NAME} accepts None or "
                             f"attention_head_dim (the value diffusers uses in its place)")
        loaded = config_from_diffusers(cls, config, name=name, class_name=CLASS_NAME, fixed={},
                                       per_block_ints=("attention_head_dim",))
        return replace(loaded, sample_size=sample_size, num_attention_heads=heads)

    def to_diffusers(self) -> dict:
        return config_to_diffusers(self, CLASS_NAME)


class I2VGenXLUNet(nn.Module):
    def __init__(self, config: I2VGenXLUNetConfig = I2VGenXLUNetConfig()):
        super().__init__()
        self.config = config
        blocks = config.blocks_config()
        channels, in_channels, context_dim = config.block_out_channels, config.in_channels, config.cross_attention_dim
        temb_channels = 4 * channels[0]

        # the noisy latent and the encoded image latent, concatenated on the channel axis
        self.conv_in = nn.Conv2d(2 * in_channels, channels[0], 3, padding=1)
        self.transformer_in = TransformerTemporalModel(TRANSFORMER_IN_HEADS, config.attention_head_dim, channels[0], 1,
                                                       config.norm_num_groups)

        # P and E_t: the image latent, encoded frame by frame, then over time
        self.image_latents_proj_in = nn.Sequential(
            nn.Conv2d(LATENT_CHANNELS, 4 * in_channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(4 * in_channels, 4 * in_channels, 3, padding=1), nn.SiLU(),
            nn.Conv2d(4 * in_channels, in_channels, 3, padding=1))
        self.image_latents_temporal_encoder = ImageLatentTemporalEncoder(in_channels)
        # G: the first frame's latent as an 8 x 8 grid of context tokens
        self.image_latents_context_embedding = nn.Sequential(
            nn.Conv2d(LATENT_CHANNELS, 8 * in_channels, 3, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d((CONTEXT_GRID, CONTEXT_GRID)),
            nn.Conv2d(8 * in_channels, 16 * in_channels, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(16 * in_channels, context_dim, 3, stride=2, padding=1))

        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)
        # W: the CLIP image embedding as in_channels context tokens
        self.context_embedding = nn.Sequential(
            nn.Linear(context_dim, temb_channels), nn.SiLU(), nn.Linear(temb_channels, context_dim * in_channels))
        self.fps_embedding = nn.Sequential(
            nn.Linear(channels[0], temb_channels), nn.SiLU(), nn.Linear(temb_channels, temb_channels))

        self.down_blocks = nn.ModuleList()
        for level, block_type in enumerate(config.down_block_types):
            self.down_blocks.append(UNetDownBlock3D(
                channels[max(level - 1, 0)], channels[level], temb_channels,
                with_attention=block_type == ATTENTION_DOWN_3D, add_downsample=level < len(channels) - 1,
                config=blocks))
        self.mid_block = UNetMidBlock3D(channels[-1], temb_channels, blocks)

        self.up_blocks = nn.ModuleList()
        reversed_channels = channels[::-1]
        for level, block_type in enumerate(config.up_block_types):
            self.up_blocks.append(UNetUpBlock3D(
                in_channels=reversed_channels[min(level + 1, len(channels) - 1)], out_channels=reversed_channels[level],
                prev_output_channels=reversed_channels[max(level - 1, 0)], temb_channels=temb_channels,
                with_attention=block_type == ATTENTION_UP_3D, add_upsample=level < len(channels) - 1, config=blocks))

        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, channels[0], eps=1e-5)
        self.conv_out = nn.Conv2d(channels[0], config.out_channels, 3, padding=1)

    @classmethod
    def from_pretrained(cls, path, subfolder: str | None = "unet", **options) -> "I2VGenXLUNet":
        """Load a diffusers-format unet folder, or a pipeline folder's ``unet`` (options: dtype, device,
        allow_pickle)."""
        return from_pretrained(cls, I2VGenXLUNetConfig, path, subfolder, **options)

    def embed_time(self, timesteps: torch.Tensor, fps: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """emb = MLP_t(PE(t)) + MLP_fps(PE(fps)): (B,), (B,) -> (B, 4 * block_out_channels[0])."""
        width = self.config.block_out_channels[0]
        temb = self.time_embedding(timestep_embedding(timesteps, width).to(dtype))
        return temb + self.fps_embedding(timestep_embedding(fps, width).to(dtype))

    def embed_context(self, image_latents: torch.Tensor, image_embeddings: torch.Tensor,
                      encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """c = [c_text ; G(first frame's latent) ; W c_clip]: (B, L + 64 + in_channels, cross_attention_dim)."""
        grid = self.image_latents_context_embedding(image_latents[:, :, 0])
        image_tokens = rearrange(grid, "b d h w -> b (h w) d")
        clip_tokens = rearrange(self.context_embedding(image_embeddings), "b (n d) -> b n d", n=self.config.in_channels)
        return torch.cat([encoder_hidden_states, image_tokens, clip_tokens], dim=1)

    def encode_image_latents(self, image_latents: torch.Tensor) -> torch.Tensor:
        """E_t(P(z_img)): (B, 4, T, H, W) -> (B, in_channels, T, H, W), to concatenate to the noisy latent."""
        batch, _, num_frames, height, width = image_latents.shape
        h = self.image_latents_proj_in(rearrange(image_latents, "b c t h w -> (b t) c h w"))
        tokens = self.image_latents_temporal_encoder(rearrange(h, "(b t) c h w -> (b h w) t c", t=num_frames))
        return rearrange(tokens, "(b h w) t c -> b c t h w", b=batch, h=height, w=width)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float, fps: torch.Tensor | int | float,
                image_latents: torch.Tensor, image_embeddings: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """sample (B, C, T, H, W), timestep and fps scalars or (B,), image_latents (B, 4, T, H, W),
        image_embeddings (B, D) (or diffusers' (B, 1, D)), encoder_hidden_states (B, L, D) -> (B, C_out, T, H, W)."""
        image_embeddings = self._check_inputs(sample, image_latents, image_embeddings, encoder_hidden_states)
        batch, num_frames = sample.shape[0], sample.shape[2]
        timesteps = check_timesteps(timestep, batch, sample.device)
        fps = _check_fps(fps, batch, sample.device)
        temb = repeat(self.embed_time(timesteps, fps, sample.dtype), "b d -> (b t) d", t=num_frames)
        context = self.embed_context(image_latents, image_embeddings, encoder_hidden_states)
        context = repeat(context, "b l d -> (b t) l d", t=num_frames)  # every frame sees the text and the image

        h = torch.cat([sample, self.encode_image_latents(image_latents)], dim=1)
        h = self.conv_in(rearrange(h, "b c t h w -> (b t) c h w"))
        h = self.transformer_in(h, num_frames)
        return frames_down_mid_up(self, h, temb, context, num_frames)

    def _check_inputs(self, sample, image_latents, image_embeddings, encoder_hidden_states) -> torch.Tensor:
        config = self.config
        check_video(sample, "sample")
        batch, channels, num_frames, height, width = sample.shape
        if channels != config.in_channels:
            raise ValueError(f"sample must be the noisy latent {VIDEO_LAYOUT} with C = {config.in_channels}, got "
                             f"shape {tuple(sample.shape)} (a (B, T, C, H, W) video is rearranged with einops: "
                             f"'b t c h w -> b c t h w')")
        factor = 2 ** (len(config.block_out_channels) - 1)
        if height % factor or width % factor:
            raise ValueError(f"H and W of sample {VIDEO_LAYOUT} must be divisible by {factor}, got {(height, width)}")
        check_video(image_latents, "image_latents")
        expected = (batch, LATENT_CHANNELS, num_frames, height, width)
        if tuple(image_latents.shape) != expected:
            raise ValueError(f"image_latents must be the image's VAE latent {VIDEO_LAYOUT} = {expected} (the sample's "
                             f"B, T, H, W with {LATENT_CHANNELS} channels), got {tuple(image_latents.shape)}")
        check_tensor(image_embeddings, "image_embeddings", ndim=(2, 3), layout="(B, D)", floating=True)
        if image_embeddings.ndim == 3 and image_embeddings.shape[1] == 1:
            image_embeddings = image_embeddings[:, 0]  # diffusers' pipeline passes one token per image: (B, 1, D)
        if tuple(image_embeddings.shape) != (batch, config.cross_attention_dim):
            raise ValueError(f"image_embeddings must be the image's CLIP embedding (B, D) = "
                             f"({batch}, {config.cross_attention_dim}), got {tuple(image_embeddings.shape)}")
        check_tensor(encoder_hidden_states, "encoder_hidden_states", ndim=3, layout="(B, L, cross_attention_dim)",
                     floating=True)
        if encoder_hidden_states.shape[0] != batch or encoder_hidden_states.shape[2] != config.cross_attention_dim:
            raise ValueError(f"encoder_hidden_states must be the text tokens (B, L, D) = "
                             f"({batch}, L, {config.cross_attention_dim}), got {tuple(encoder_hidden_states.shape)}")
        for tensor, name in ((sample, "sample"), (image_latents, "image_latents"),
                             (image_embeddings, "image_embeddings"), (encoder_hidden_states, "encoder_hidden_states")):
            check_matches_weights(tensor, name, self.conv_in.weight)
        return image_embeddings


def _check_fps(fps, batch: int, device: torch.device) -> torch.Tensor:
    """The clips' frame rates: one number for the batch or one per clip (B,), finite. Returns (B,)."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, torch.Tensor)):
        raise TypeError(f"fps must be a number or a tensor of shape (B,) = ({batch},), got {type(fps).__name__}")
    fps = torch.as_tensor(fps, device=device)
    if fps.ndim > 1 or fps.numel() not in (1, batch):
        raise ValueError(f"fps must be a scalar or have shape (B,) = ({batch},), got shape {tuple(fps.shape)}")
    if fps.is_floating_point() and not torch.isfinite(fps).all():
        raise ValueError(f"fps must be finite, got {fps.tolist()}")
    return fps.reshape(-1).expand(batch)


def load_i2vgen_xl_unet(folder: str | Path, dtype: torch.dtype | None = None, *,
                        device: str | torch.device | None = None) -> I2VGenXLUNet:
    """An I2VGen-XL U-Net folder in diffusers' format (config.json + safetensors), or a pipeline folder holding one in
    ``unet/``: the architecture built from config.json (every key honoured or refused by name), then every weight
    checked by name and shape and loaded."""
    return I2VGenXLUNet.from_pretrained(folder, dtype=dtype, device=device)
