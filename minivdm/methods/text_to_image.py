r"""Latent text-to-image sampling, Stable Diffusion style (Rombach et al., 2022, arXiv:2112.10752).

    c = TextEncoder(tokens(prompt)),   z_T ~ N(0, I) in the VAE's latent space (H/8 x W/8)
    for t in T ... 1:   eps_hat = eps(z_t, t, empty) + w (eps(z_t, t, c) - eps(z_t, t, empty))
                        z_{t-1} = DDIM(z_t, eps_hat)
    image = VAE.decode(z_0 / scaling_factor)

The denoiser and the sampler are minivdm's own (from scratch); the text encoder (CLIP) and the VAE
come from transformers / diffusers, which the course does not rewrite. With the same components and
seed this reproduces diffusers' ``StableDiffusionPipeline`` (tested on tiny random components).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from minivdm.diffusion import DiscreteSchedule, guided_model, sample
from minivdm.diffusion.scheduler_config import read_scheduler_config
from minivdm.models.unet_2d_condition import UNet2DConditionModel


@dataclass(frozen=True)
class SamplerSettings:
    """What a checkpoint's scheduler/scheduler_config.json fixes about sampling with our DDIM.

    ``from_scheduler_config`` honours or refuses every key by name (``minivdm.diffusion.scheduler_config``);
    whatever sampler the config names, minivdm samples with DDIM and retraces diffusers' DDIMScheduler.
    """

    schedule: DiscreteSchedule
    prediction_type: str = "eps"
    steps_offset: int = 0
    set_alpha_to_one: bool = True
    timestep_spacing: str = "leading"

    @classmethod
    def from_scheduler_config(cls, config: dict) -> "SamplerSettings":
        return cls(**read_scheduler_config(config))

    def times_and_step_ends(self, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(times, step_ends) for ``sample``: where diffusers' DDIMScheduler evaluates and lands each step."""
        return self.schedule.ddim_times(num_steps, self.timestep_spacing, self.steps_offset, self.set_alpha_to_one)

    def times(self, num_steps: int) -> torch.Tensor:
        return self.times_and_step_ends(num_steps)[0]


def encode_prompts(tokenizer, text_encoder, prompts: list[str], *, clip_skip: int = 0) -> torch.Tensor:
    """(B, L, D) hidden states of the text encoder's last layer: what the U-Net cross-attends to. With
    ``clip_skip`` = k > 0 (diffusers' name), those of the layer k before the last, through the final layer norm."""
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a list of str, got {prompts!r}")
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or clip_skip < 0:
        raise ValueError(f"clip_skip must be an int >= 0 (text encoder layers skipped at the end), got {clip_skip!r}")
    tokens = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    device = next(text_encoder.parameters()).device
    with torch.no_grad():
        if clip_skip == 0:
            return text_encoder(tokens.input_ids.to(device))[0]
        # hidden_states[-1] is the last layer's output before the final layer norm
        hidden = text_encoder(tokens.input_ids.to(device), output_hidden_states=True).hidden_states[-(clip_skip + 1)]
        # transformers 4 keeps CLIP's layers under text_model; transformers 5 on the model itself
        return getattr(text_encoder, "text_model", text_encoder).final_layer_norm(hidden)


@torch.no_grad()
def sample_latents(unet, settings: SamplerSettings, condition: torch.Tensor, null_condition: torch.Tensor,
                   shape: tuple[int, ...], *, num_steps: int, guidance_scale: float,
                   generator: torch.Generator | None = None, progress: bool = True) -> torch.Tensor:
    """DDIM with classifier-free guidance in a U-Net's latent space, from z_T ~ N(0, I) of ``shape``.

    The same loop serves images (B, C, h, w) and videos (B, C, T, h, w): only the U-Net differs.
    """
    device, dtype = unet.conv_in.weight.device, unet.conv_in.weight.dtype

    def unet_in_continuous_time(z_t, t, context):
        return unet(z_t, settings.schedule.timestep_from_t(t.double().cpu()).to(device), context)

    if guidance_scale > 1:
        model_fn = guided_model(unet_in_continuous_time, condition, null_condition, guidance_scale)
    else:
        def model_fn(z_t, t):
            return unet_in_continuous_time(z_t, t, condition)

    z_T = torch.randn(shape, generator=generator, dtype=dtype).to(device)
    times, step_ends = settings.times_and_step_ends(num_steps)
    return sample(model_fn, z_T, settings.schedule, times, step_ends=step_ends, sampler="ddim",
                  prediction_type=settings.prediction_type, progress=progress)


def latent_size(unet, vae, height: int | None, width: int | None) -> tuple[int, int]:
    """(h, w) of the latents for an output of height x width (default: the U-Net's sample_size)."""
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    height = height or unet.config.sample_size * vae_scale
    width = width or unet.config.sample_size * vae_scale
    if height % vae_scale or width % vae_scale:
        raise ValueError(f"height and width must be multiples of the VAE's factor {vae_scale}, got {height}x{width}")
    return height // vae_scale, width // vae_scale


@torch.no_grad()
def text_to_image(unet: UNet2DConditionModel, vae, text_encoder, tokenizer, settings: SamplerSettings,
                  prompts: list[str], *, negative_prompt: str = "", num_steps: int = 50, guidance_scale: float = 7.5,
                  height: int | None = None, width: int | None = None, generator: torch.Generator | None = None,
                  progress: bool = True) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] for a list of prompts."""
    h, w = latent_size(unet, vae, height, width)
    dtype = unet.conv_in.weight.dtype
    condition = encode_prompts(tokenizer, text_encoder, prompts).to(dtype)
    null_condition = encode_prompts(tokenizer, text_encoder, [negative_prompt] * len(prompts)).to(dtype)
    latents = sample_latents(unet, settings, condition, null_condition, (len(prompts), unet.config.in_channels, h, w),
                             num_steps=num_steps, guidance_scale=guidance_scale, generator=generator, progress=progress)
    images = vae.decode(latents / vae.config.scaling_factor).sample
    return (images / 2 + 0.5).clamp(0, 1)


def load_components(folder: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
                    unet_class=UNet2DConditionModel, load_unet=None):
    """Our U-Net (``unet_class``, or ``load_unet(folder, dtype, device)``) plus the published VAE, text encoder and
    tokenizer from a diffusers pipeline folder.

    Returns (unet, vae, text_encoder, tokenizer, settings). Nothing is downloaded: ``folder`` is a
    local copy (or a Hugging Face cache snapshot) of the checkpoint.
    """
    from diffusers import AutoencoderKL
    from transformers import AutoTokenizer, CLIPTextModel

    folder = Path(folder)
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (folder / part).is_dir():
            raise FileNotFoundError(f"{folder} is not a diffusers pipeline folder: it has no {part}/ "
                                    f"(found: {sorted(p.name for p in folder.iterdir()) if folder.is_dir() else 'nothing'})")
    if load_unet is None:
        unet = unet_class.from_pretrained(folder, "unet", dtype=dtype, device=device)
    else:
        unet = load_unet(folder, dtype, device)
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype).to(device).eval()
    text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    return unet, vae, text_encoder, tokenizer, SamplerSettings.from_scheduler_config(scheduler_config)
