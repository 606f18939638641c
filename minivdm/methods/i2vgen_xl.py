r"""Image-to-video with I2VGen-XL (Zhang et al., 2023, "I2VGen-XL: High-Quality Image-to-Video Synthesis via Cascaded
Diffusion Models", arXiv:2311.04145): the base stage's sampling loop around its U-Net
(``minivdm.models.i2vgen_xl_unet``).

A still image x_img (B, 3, H, W) in [-1, 1] and a caption condition the video, and the frame rate steers its motion:

    c_text = CLIP_text(prompt)                                  (B, L, D)     the penultimate layer, final layer norm
    c_clip = CLIP_image(normalize(resize(square((x_img + 1) / 2))))   (B, D)  the image's CLIP embedding
    z_img  = s (mu + sigma n_img),   n_img ~ N(0, I)            (B, 4, h, w)  a sample of the VAE posterior E(x_img)
    y      = [z_img, 1 / (T-1), 2 / (T-1), ..., 1]              (B, 4, T, h, w)  the image latent on frame 1; frame
                                                                              k + 1 the constant k / (T - 1)
    fps                                                         the frame rate, embedded like the timestep

square() is the centre square of side min(H, W), resize() a bilinear resize with antialiasing to the image
encoder's input size (PIL's bilinear filter), normalize() CLIP's per-channel statistics, s the VAE's scaling factor.
The U-Net F turns y into its two image paths (concatenated to z_t, and frame 1 as 64 context tokens) and takes
c_clip as more context tokens. Sampling is DDIM (the scheduler config's schedule and spacing, ``eps`` or ``v``) from
z_T ~ N(0, I) of shape (B, 4, T, h, w), with classifier-free guidance on the caption and the CLIP embedding: the
unconditional branch reads the negative prompt and a zero CLIP embedding, and keeps the image latent and the fps:

    pred_w  = F(z_t, t, fps, y, 0, c_neg) + w (F(z_t, t, fps, y, c_clip, c_text) - F(z_t, t, fps, y, 0, c_neg))
    z_{t-1} = DDIM(z_t, pred_w)                 (guided when w > 1; both branches in one batch)
    video[:, :, f] = D(z_0[:, :, f] / s)        the image VAE on each frame, ``decode_chunk_size`` frames at a time

With the same components this reproduces diffusers' ``I2VGenXLPipeline`` (tested on tiny random components). Where
diffusers does something surprising, we do the same:

* the text tokens are CLIP's penultimate layer (the pipeline's default clip_skip=1), not its last;
* y's later frames are not zeros but a ramp of constants, the frame's position in the clip (diffusers' "position
  mask"; the U-Net's temporal encoder over y sees it);
* z_img is a *sample* of the posterior, not its mean. diffusers draws n_img from torch's global generator; we draw
  it from ``generator``, first, then z_T (in the (B, C, T, h, w) layout): given a generator whose first draw is
  n_img, diffusers' z_T is our second draw (the test sets both up so).

One difference: diffusers first scales a landscape image up (box filter) until its height is the video's width, cuts
out the centre square, then resizes that to the CLIP size, two resamplings of the same square where we do one (mean
difference about 3 grey levels on a noisy test image). For square and portrait images both paths crop the same square
and resize it once; where no resize is needed, the pixels are identical. Videos are one per (image, prompt); all of it
runs in the models' dtypes, with the latents kept in float32 between steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import repeat

from minivdm.diffusion import classifier_free_guidance, sample
from minivdm.methods.image_to_video import CLIP_MEAN, CLIP_STD, check_start_image, embed_clip_pixels
from minivdm.methods.text_to_image import SamplerSettings, encode_prompts
from minivdm.methods.text_to_video import decode_frames
from minivdm.models.i2vgen_xl_unet import LATENT_CHANNELS, I2VGenXLUNet
from minivdm.validation import check_image, check_number, check_positive_int, check_video

# the defaults of diffusers' I2VGenXLPipeline
I2VGEN_XL_NUM_FRAMES = 16
I2VGEN_XL_NUM_STEPS = 50
I2VGEN_XL_GUIDANCE = 9.0
I2VGEN_XL_FPS = 16
I2VGEN_XL_SIZE = (704, 1280)  # height x width of the pipeline's default video
I2VGEN_XL_CLIP_SKIP = 1  # the caption's tokens are CLIP's penultimate layer


# ------------------------------------------------------------------------------------------------
# The conditions


def clip_view(image: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 3, size, size) in [0, 1]: the centre square of side min(H, W), resized
    bilinearly with antialiasing (PIL's bilinear filter, which diffusers' pipeline applies)."""
    check_image(image, "image")
    height, width = image.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[:, :, top:top + side, left:left + side]
    if side != size:
        square = F.interpolate(square, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (square + 1.0) / 2.0


@torch.no_grad()
def encode_image_latent(vae, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z_img (B, 4, h, w) = s (mu + sigma n_img): a sample of the VAE posterior of images (B, 3, H, W) in [-1, 1],
    times the VAE's scaling factor s; n_img ~ N(0, I) drawn from ``generator`` (on its device)."""
    check_image(image, "image")
    parameter = next(vae.parameters())
    posterior = vae.encode(image.to(device=parameter.device, dtype=parameter.dtype)).latent_dist
    mu, sigma = posterior.mean, posterior.std
    generator_device = generator.device if generator is not None else mu.device
    n_img = torch.randn(mu.shape, generator=generator, device=generator_device, dtype=mu.dtype).to(mu.device)
    return (mu + sigma * n_img) * vae.config.scaling_factor


def image_latent_frames(z_img: torch.Tensor, num_frames: int) -> torch.Tensor:
    """y (B, C, T, h, w): z_img (B, C, h, w) on frame 1; on frame k + 1 (k = 1 .. T - 1) the constant k / (T - 1) at
    every channel and pixel, the frame's position in the clip."""
    check_image(z_img, "z_img")
    check_positive_int(num_frames, "num_frames")
    batch, channels, height, width = z_img.shape
    positions = torch.arange(1, num_frames, dtype=z_img.dtype, device=z_img.device) / max(num_frames - 1, 1)
    later = repeat(positions, "t -> b c t h w", b=batch, c=channels, h=height, w=width)
    return torch.cat([z_img[:, :, None], later], dim=2)


# ------------------------------------------------------------------------------------------------
# Sampling


@torch.no_grad()
def sample_i2vgen_xl_latents(unet: I2VGenXLUNet, settings: SamplerSettings, text: torch.Tensor,
                             null_text: torch.Tensor, image_embedding: torch.Tensor, image_latents: torch.Tensor,
                             fps: float, z_T: torch.Tensor, *, num_steps: int = I2VGEN_XL_NUM_STEPS,
                             guidance_scale: float = I2VGEN_XL_GUIDANCE, progress: bool = True) -> torch.Tensor:
    """z_0 (B, 4, T, h, w) from z_T by DDIM with classifier-free guidance (when guidance_scale > 1; both branches in
    one batch, [unconditional; conditional]).

    text and null_text (B, L, D) are c_text and c_neg, image_embedding (B, 1, D) is c_clip (zeros in the
    unconditional branch), image_latents (B, 4, T, h, w) is y (in both branches), fps a number. The latents stay
    float32 between steps; the U-Net sees them in its own dtype."""
    check_video(z_T, "z_T")
    if tuple(image_latents.shape) != (z_T.shape[0], LATENT_CHANNELS, *z_T.shape[2:]):
        raise ValueError(f"image_latents must be y (B, 4, T, h, w) = {(z_T.shape[0], LATENT_CHANNELS, *z_T.shape[2:])}"
                         f", one per clip of z_T {tuple(z_T.shape)}, got {tuple(image_latents.shape)}")
    parameter = next(unet.parameters())
    device, dtype = parameter.device, parameter.dtype
    guided = guidance_scale > 1
    context, y, c_clip = text.to(device, dtype), image_latents.to(device, dtype), image_embedding.to(device, dtype)
    if guided:
        context = torch.cat([null_text.to(device, dtype), context])
        c_clip = torch.cat([torch.zeros_like(c_clip), c_clip])  # no image embedding without the condition
        y = torch.cat([y, y])  # the image latent stays in both branches

    def model_fn(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        timestep = settings.schedule.timestep_from_t(t.double().cpu()).to(device)
        z_t = z_t.to(dtype)
        if guided:
            z_t, timestep = torch.cat([z_t, z_t]), torch.cat([timestep, timestep])
        prediction = unet(z_t, timestep, fps, y, c_clip, context).float()
        if not guided:
            return prediction
        pred_uncond, pred_cond = prediction.chunk(2)
        return classifier_free_guidance(pred_cond, pred_uncond, guidance_scale)

    times, step_ends = settings.times_and_step_ends(num_steps)
    return sample(model_fn, z_T.to(device=device, dtype=torch.float32), settings.schedule, times,
                  step_ends=step_ends, sampler="ddim", prediction_type=settings.prediction_type, progress=progress)


# ------------------------------------------------------------------------------------------------
# The whole pipeline


def _prompt_list(prompts, name: str, batch: int) -> list[str]:
    """One prompt for every image (a str), or one per image (a list of B str)."""
    if isinstance(prompts, str):
        return [prompts] * batch
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(prompt, str) for prompt in prompts):
        raise TypeError(f"{name} must be a str (for every image) or a list of B str (one per image), got {prompts!r}")
    if len(prompts) != batch:
        raise ValueError(f"{name} must have one entry per image: image has B = {batch}, {name} has {len(prompts)}")
    return list(prompts)


def check_i2vgen_xl_inputs(unet: I2VGenXLUNet, vae, text_encoder, image_encoder, settings: SamplerSettings,
                           image: torch.Tensor, *, num_frames: int, num_steps: int, guidance_scale: float, fps: float,
                           decode_chunk_size: int, output: str, generator) -> None:
    """Every argument of ``generate_i2vgen_xl`` but the prompts, refused by name before any model runs."""
    if not isinstance(unet, I2VGenXLUNet):
        raise TypeError(f"unet must be minivdm's I2VGenXLUNet (load one with load_i2vgen_xl_unet), got "
                        f"{type(unet).__name__}")
    if not isinstance(settings, SamplerSettings):
        raise TypeError(f"settings must be a SamplerSettings (SamplerSettings.from_scheduler_config of the "
                        f"scheduler_config.json), got {type(settings).__name__}")
    check_start_image(image, unet, vae)
    width = unet.config.cross_attention_dim
    if vae.config.latent_channels != LATENT_CHANNELS or unet.config.in_channels != LATENT_CHANNELS:
        raise ValueError(f"I2VGen-XL's U-Net takes {LATENT_CHANNELS}-channel latents and a {LATENT_CHANNELS}-channel "
                         f"image latent; this VAE has latent_channels={vae.config.latent_channels} and the U-Net "
                         f"in_channels={unet.config.in_channels}")
    for model, key, what in ((text_encoder, "hidden_size", "text encoder"), (image_encoder, "projection_dim",
                                                                          "image encoder")):
        if getattr(model.config, key) != width:
            raise ValueError(f"the {what} has {key}={getattr(model.config, key)}; the U-Net attends to tokens of "
                             f"cross_attention_dim={width}")
    check_positive_int(num_frames, "num_frames")
    check_positive_int(num_steps, "num_steps")
    check_positive_int(decode_chunk_size, "decode_chunk_size")
    check_number(guidance_scale, "guidance_scale")
    if check_number(fps, "fps") <= 0:
        raise ValueError(f"fps must be > 0 (the frame rate the video is conditioned on, e.g. 16), got {fps}")
    if output not in ("video", "latents"):
        raise ValueError(f"output must be 'video' or 'latents', got {output!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


@torch.no_grad()
def generate_i2vgen_xl(unet: I2VGenXLUNet, vae, text_encoder, tokenizer, image_encoder, settings: SamplerSettings,
                       image: torch.Tensor, prompts: str | list[str], *, negative_prompt: str | list[str] = "",
                       num_frames: int = I2VGEN_XL_NUM_FRAMES, num_steps: int = I2VGEN_XL_NUM_STEPS,
                       guidance_scale: float = I2VGEN_XL_GUIDANCE, fps: float = I2VGEN_XL_FPS,
                       decode_chunk_size: int = 1, clip_mean=CLIP_MEAN, clip_std=CLIP_STD,
                       clip_skip: int = I2VGEN_XL_CLIP_SKIP, generator: torch.Generator | None = None,
                       output: str = "video", progress: bool = True) -> torch.Tensor:
    """Videos (B, 3, T, H, W) in [-1, 1] that start from ``image`` (B, 3, H, W) in [-1, 1] (uint8 pixels p:
    p / 127.5 - 1) at the video's size, one per image and its prompt. ``output="latents"``: z_0 (B, 4, T, h, w).

    unet: minivdm's ``I2VGenXLUNet``; vae: diffusers' ``AutoencoderKL``; text_encoder, tokenizer: transformers'
    CLIP text model and tokenizer; image_encoder: transformers' ``CLIPVisionModelWithProjection``; settings: the
    scheduler config's DDIM (``SamplerSettings``). prompts and negative_prompt: one str for every image or a list of
    B. clip_mean, clip_std: the feature extractor's statistics. Defaults are diffusers' pipeline's (16 frames at
    16 fps, 50 steps, w = 9, one frame decoded at a time). The noise comes from ``generator``: n_img, then z_T."""
    check_i2vgen_xl_inputs(unet, vae, text_encoder, image_encoder, settings, image, num_frames=num_frames,
                           num_steps=num_steps, guidance_scale=guidance_scale, fps=fps,
                           decode_chunk_size=decode_chunk_size, output=output, generator=generator)
    batch, _, height, width = image.shape
    prompts = _prompt_list(prompts, "prompts", batch)
    negative_prompts = _prompt_list(negative_prompt, "negative_prompt", batch)
    parameter = next(unet.parameters())
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    text = encode_prompts(tokenizer, text_encoder, prompts, clip_skip=clip_skip)
    null_text = encode_prompts(tokenizer, text_encoder, negative_prompts, clip_skip=clip_skip)
    image_embedding = embed_clip_pixels(image_encoder, clip_view(image, image_encoder.config.image_size),
                                        clip_mean, clip_std)
    # the two draws: the posterior's noise n_img, then z_T
    image_latents = image_latent_frames(encode_image_latent(vae, image, generator), num_frames)
    shape = (batch, LATENT_CHANNELS, num_frames, height // vae_factor, width // vae_factor)
    generator_device = generator.device if generator is not None else parameter.device
    z_T = torch.randn(shape, generator=generator, device=generator_device, dtype=parameter.dtype)

    latents = sample_i2vgen_xl_latents(unet, settings, text, null_text, image_embedding, image_latents, fps, z_T,
                                       num_steps=num_steps, guidance_scale=guidance_scale, progress=progress)
    if output == "latents":
        return latents
    vae_parameter = next(vae.parameters())
    latents = latents.to(device=vae_parameter.device, dtype=vae_parameter.dtype)
    return decode_frames(vae, latents, frames_per_batch=decode_chunk_size).clamp(-1, 1)
