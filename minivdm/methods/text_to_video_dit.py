r"""Text-to-video with a Diffusion Transformer: CogVideoX (Yang et al., 2024, "CogVideoX: Text-to-Video Diffusion
Models with An Expert Transformer", arXiv:2408.06072).

The loop of ModelScope's (``minivdm.methods.text_to_video``) with three parts swapped: T5 instead of CLIP, the
transformer over spacetime patches (``minivdm.models.dit.VideoDiT``) instead of the 3D U-Net, and a 3D VAE that
compresses time 4x (causally: the first frame alone, then 4 frames per latent frame) instead of the image VAE:

    c = T5(prompt) (226 tokens, padded),    z_T ~ N(0, I) of shape (B, 16, 1 + (F - 1) / 4, H / 8, W / 8)
    for t in T ... 1:   v_hat = v(z_t, t, empty) + w_t (v(z_t, t, c) - v(z_t, t, empty))
                        z_s = DDIM(z_t, v_hat)               (CogVideoX 2B's scheduler)
                           or DPM-Solver++(2M) SDE(z_t, v_hat) (5B's: ``minivdm.diffusion.dpm_solver``)
    video = VAE_3D.decode(z_0 / scaling_factor)           F = 4 (T - 1) + 1 frames

The noise schedule is Stable Diffusion's betas with the SNR of every timestep divided by 3, rescaled to zero terminal
SNR (so z_T is pure noise) and sampled with v-prediction on the "trailing" grid; all of it is read from the
pipeline's scheduler_config.json (``minivdm.diffusion.scheduler_config``). Guidance is classifier-free with a fixed
w, or diffusers' ``use_dynamic_cfg`` schedule w_t (``dynamic_guidance_scale``).

Videos are (B, C, T, H, W) here; diffusers' pipeline keeps latents as (B, T, C, H, W). The noise is drawn in its
layout, so the same seed gives the same video: with the same components this reproduces ``CogVideoXPipeline``
(tested on tiny random components in the published folder layout).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from einops import rearrange

from minivdm.diffusion import classifier_free_guidance, sample
from minivdm.diffusion.dpm_solver import sample_dpm_solver_2m_sde
from minivdm.methods.text_to_image import SamplerSettings
from minivdm.models.dit import VideoDiT
from minivdm.validation import check_positive_int

MAX_SEQUENCE_LENGTH = 226  # CogVideoX's T5 context: every prompt is padded (or cut) to this many tokens
DDIM, DPM_SOLVER = "ddim", "dpm-solver++(2m)-sde"
# the scheduler a pipeline folder names -> the solver that retraces it step for step
SOLVERS = {"CogVideoXDDIMScheduler": DDIM, "DDIMScheduler": DDIM, "CogVideoXDPMScheduler": DPM_SOLVER}
VAE_CLASS = "AutoencoderKLCogVideoX"


def encode_t5_prompts(tokenizer, text_encoder, prompts: list[str],
                      max_sequence_length: int = MAX_SEQUENCE_LENGTH) -> torch.Tensor:
    """(B, max_sequence_length, D) last hidden states of T5's encoder, every prompt padded to the full length (the
    padding tokens are encoded and attended to, as CogVideoX was trained)."""
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a list of str, got {prompts!r}")
    check_positive_int(max_sequence_length, "max_sequence_length")
    tokens = tokenizer(prompts, padding="max_length", max_length=max_sequence_length, truncation=True,
                       add_special_tokens=True, return_tensors="pt")
    device = next(text_encoder.parameters()).device
    with torch.no_grad():
        return text_encoder(tokens.input_ids.to(device))[0]


def dynamic_guidance_scale(guidance_scale: float, timestep: int, num_steps: int) -> float:
    """diffusers' ``use_dynamic_cfg``: w_t = 1 + w (1 - cos(pi ((n - k) / n)^5)) / 2 at timestep k of n steps.

    As the pipeline computes it, k is the timestep on 0..999 and n the number of sampling steps, so for n < 1000
    (n - k) / n is far below -1 and w_t swings between 1 and 1 + w from step to step rather than rising smoothly
    (the formula reads as written for step indices k); we reproduce it as the pipeline runs it."""
    return 1 + guidance_scale * (1 - math.cos(math.pi * ((num_steps - timestep) / num_steps) ** 5.0)) / 2


def latent_grid(transformer: VideoDiT, vae, num_frames: int, height: int | None, width: int | None):
    """(latent frames T, h, w, padding frames) for a video of num_frames x height x width.

    The VAE keeps the first frame and compresses each next 4 into one latent frame, so num_frames must be 4k + 1;
    height and width must be multiples of the VAE's 8 times the transformer's patch 2 (16 for CogVideoX). With a
    temporal patch p_t (CogVideoX 1.5) the latents get extra frames in front until p_t divides T, dropped again
    before decoding."""
    check_positive_int(num_frames, "num_frames")
    temporal = vae.config.temporal_compression_ratio
    spatial = 2 ** (len(vae.config.block_out_channels) - 1)
    if (num_frames - 1) % temporal:
        raise ValueError(f"num_frames must be {temporal}k + 1 (the 3D VAE keeps the first frame and packs every next "
                         f"{temporal} into one latent frame), e.g. 49, got {num_frames}")
    multiple = spatial * transformer.config.patch_size
    height = height or transformer.config.sample_height * spatial
    width = width or transformer.config.sample_width * spatial
    if height % multiple or width % multiple:
        raise ValueError(f"height and width must be multiples of {multiple} (the VAE's factor {spatial} times the "
                         f"transformer's patch {transformer.config.patch_size}), got {height}x{width}")
    frames = (num_frames - 1) // temporal + 1
    p_t = transformer.config.patch_size_t or 1
    return frames, height // spatial, width // spatial, (-frames) % p_t


def draw_noise(shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """N(0, I) of ``shape`` (B, C, T, h, w), drawn in diffusers' (B, T, C, h, w) order (on the generator's device) so
    that a seed gives the pipeline's numbers; returned in float32, our layout."""
    batch, channels, frames, height, width = shape
    generator_device = generator.device if generator is not None else device
    noise = torch.randn((batch, frames, channels, height, width), generator=generator, dtype=dtype,
                        device=generator_device)
    return rearrange(noise, "b t c h w -> b c t h w").to(device=device, dtype=torch.float32)


@torch.no_grad()
def sample_video_latents(transformer: VideoDiT, settings: SamplerSettings, condition: torch.Tensor,
                         null_condition: torch.Tensor, z_T: torch.Tensor, *, solver: str = DDIM, num_steps: int = 50,
                         guidance_scale: float = 6.0, use_dynamic_cfg: bool = False,
                         generator: torch.Generator | None = None, progress: bool = True) -> torch.Tensor:
    """z_0 (B, C, T, h, w) from z_T with the transformer's prediction, guided when guidance_scale > 1 (then both
    branches run in one batch: [unconditional; conditional]). The latents stay float32 between steps; the
    transformer sees them in its own dtype."""
    if solver not in (DDIM, DPM_SOLVER):
        raise ValueError(f"solver must be {DDIM!r} or {DPM_SOLVER!r}, got {solver!r}")
    check_positive_int(num_steps, "num_steps")
    parameter = next(transformer.parameters())
    device, dtype = parameter.device, parameter.dtype
    guided = guidance_scale > 1
    condition, null_condition = condition.to(device, dtype), null_condition.to(device, dtype)

    def model_fn(z_t, t):
        timestep = settings.schedule.timestep_from_t(t.double().cpu()).to(device)
        if not guided:
            return transformer(z_t.to(dtype), timestep, condition).float()
        both = transformer(torch.cat([z_t, z_t]).to(dtype), torch.cat([timestep, timestep]),
                           torch.cat([null_condition, condition])).float()
        pred_uncond, pred_cond = both.chunk(2)
        w = dynamic_guidance_scale(guidance_scale, int(timestep[0]), num_steps) if use_dynamic_cfg else guidance_scale
        return classifier_free_guidance(pred_cond, pred_uncond, w)

    times, step_ends = settings.times_and_step_ends(num_steps)
    if solver == DDIM:
        return sample(model_fn, z_T, settings.schedule, times, step_ends=step_ends, sampler="ddim",
                      prediction_type=settings.prediction_type, progress=progress)
    return sample_dpm_solver_2m_sde(model_fn, z_T, settings.schedule, times, step_ends,
                                    lambda: draw_noise(tuple(z_T.shape), generator, dtype, device),
                                    prediction_type=settings.prediction_type, progress=progress)


@torch.no_grad()
def decode_video(vae, latents: torch.Tensor) -> torch.Tensor:
    """(B, C, T, h, w) latents -> (B, 3, 4 (T - 1) + 1, H, W) video in [-1, 1], with the 3D VAE over the whole clip."""
    parameter = next(vae.parameters())
    video = vae.decode((latents / vae.config.scaling_factor).to(parameter)).sample
    return video.float().clamp(-1, 1)


@torch.no_grad()
def text_to_video_dit(transformer: VideoDiT, vae, text_encoder, tokenizer, settings: SamplerSettings,
                      prompts: list[str], *, solver: str = DDIM, num_frames: int = 49, negative_prompt: str = "",
                      num_steps: int = 50, guidance_scale: float = 6.0, use_dynamic_cfg: bool = False,
                      height: int | None = None, width: int | None = None, generator: torch.Generator | None = None,
                      max_sequence_length: int = MAX_SEQUENCE_LENGTH, output: str = "video",
                      progress: bool = True) -> torch.Tensor:
    """Videos (B, 3, num_frames, H, W) in [-1, 1] for a list of prompts (CogVideoX's defaults: 49 frames at the
    transformer's sample size, 480x720; 50 steps, w = 6). ``output="latents"``: z_0 (B, C, T, h, w) instead."""
    if not isinstance(transformer, VideoDiT) or transformer.config.text_conditioning != "joint":
        raise TypeError(f"transformer must be minivdm's VideoDiT with CogVideoX's joint text conditioning, got "
                        f"{type(transformer).__name__}")
    if transformer.config.out_channels != transformer.config.in_channels:
        raise ValueError(f"the transformer predicts {transformer.config.out_channels} channels for "
                         f"{transformer.config.in_channels} input channels; the sampler needs one prediction per "
                         f"latent channel (a learned variance is not supported)")
    if output not in ("video", "latents"):
        raise ValueError(f"output must be 'video' or 'latents', got {output!r}")
    frames, h, w, padding = latent_grid(transformer, vae, num_frames, height, width)
    dtype = next(transformer.parameters()).dtype
    condition = encode_t5_prompts(tokenizer, text_encoder, prompts, max_sequence_length)
    null_condition = encode_t5_prompts(tokenizer, text_encoder, [negative_prompt] * len(prompts), max_sequence_length)
    z_T = draw_noise((len(prompts), transformer.config.in_channels, frames + padding, h, w), generator, dtype,
                     next(transformer.parameters()).device)
    latents = sample_video_latents(transformer, settings, condition, null_condition, z_T, solver=solver,
                                   num_steps=num_steps, guidance_scale=guidance_scale, use_dynamic_cfg=use_dynamic_cfg,
                                   generator=generator, progress=progress)[:, :, padding:]
    return latents if output == "latents" else decode_video(vae, latents)


def load_cogvideox_components(folder: str | Path, *, dtype: torch.dtype = torch.float32,
                              device: str | torch.device = "cpu"):
    """(transformer, vae, text_encoder, tokenizer, settings, solver) of a CogVideoX pipeline folder (as
    ``CogVideoXPipeline.save_pretrained`` writes it, or a Hugging Face cache snapshot): our VideoDiT, diffusers' 3D
    VAE, transformers' T5 encoder and tokenizer, and the schedule and solver its scheduler config names."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import AutoTokenizer, T5EncoderModel

    from minivdm.models.dit_checkpoints import load_dit

    folder = Path(folder)
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (folder / part).is_dir():
            found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "nothing"
            raise FileNotFoundError(f"{folder} is not a CogVideoX pipeline folder: it has no {part}/ (found: {found})")
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    class_name = scheduler_config.get("_class_name")
    if class_name not in SOLVERS:
        raise ValueError(f"{folder / 'scheduler'} is a {class_name}; minivdm samples CogVideoX with the schedulers it "
                         f"ships, retraced step for step: one of {sorted(SOLVERS)}")
    vae_class = json.loads((folder / "vae" / "config.json").read_text()).get("_class_name")
    if vae_class != VAE_CLASS:
        raise ValueError(f"{folder / 'vae'} is a {vae_class}; CogVideoX decodes with the 3D {VAE_CLASS}")
    settings = SamplerSettings.from_scheduler_config(scheduler_config)
    transformer = load_dit(folder, "transformer", dtype=dtype, device=device)
    vae = AutoencoderKLCogVideoX.from_pretrained(folder / "vae", torch_dtype=dtype).to(device).eval()
    text_encoder = T5EncoderModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    return transformer, vae, text_encoder, tokenizer, settings, SOLVERS[class_name]
