r"""Image-to-video with Stable Video Diffusion (Blattmann et al., 2023, "Stable Video Diffusion: Scaling Latent Video
Diffusion Models to Large Datasets", arXiv:2311.15127): the sampling loop around SVD's U-Net
(``minivdm.models.svd_unet``).

A still image x_0 (B, 3, H, W) in [-1, 1] conditions the video twice, and three numbers steer its motion:

    c_clip = CLIP(normalize((resize_224(x_0) + 1) / 2))     (B, 1, D)     the image's CLIP embedding
    e      = mode(E(x_0 + s n_aug)),   n_aug ~ N(0, I)      (B, 4, h, w)  the noise-augmented image's VAE latent
    u      = (fps - 1, motion_bucket_id, s)                 (B, 3)        s = noise_aug_strength

resize_224 blurs with a Gaussian of sigma = max((size / 224 - 1) / 2, 0.001) per axis (an antialiasing filter when
shrinking) and resizes bicubically to 224 x 224; normalize uses CLIP's mean and std. The latent e is the mean of the
VAE's posterior and is *not* multiplied by the VAE's scaling factor (SVD was trained that way). Sampling is EDM's
(``minivdm.diffusion.edm``, sigma_data = 1, v-prediction) from y = sqrt(sigma_max^2 + 1) n, n ~ N(0, I) of shape
(B, 4, T, h, w); the U-Net F sees c_in y with the image latent repeated on every frame concatenated on the channel
axis, and classifier-free guidance drops both image conditions to zeros:

    v_cond   = F([c_in y ; repeat_T(e)], c_noise, c_clip, u)
    v_uncond = F([c_in y ; 0],           c_noise, 0,      u)
    v_f      = v_uncond,f + w_f (v_cond,f - v_uncond,f),    w_f = w_min + f / (T - 1) (w_max - w_min),  f = 0 .. T-1

    D(y; sigma) = y / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) v,
    y <- y + (sigma_next - sigma) (y - D) / sigma                   (Euler over Karras et al.'s sigmas)

The guidance scale rises frame by frame (1 on the first frame, which should stay the image, to 3 on the last, by
default); guidance runs only when w_max > 1. The video is the temporal decoder's reading of z_0 / scaling_factor,
``decode_chunk_size`` frames at a time.

With the same components and generator this reproduces diffusers' ``StableVideoDiffusionPipeline`` given the image
as a PIL image (tested on tiny random components). Where diffusers does something surprising, we do the same:

* the random draws come in diffusers' order and layout: n_aug (B, 3, H, W) first, then n in (B, T, C, h, w).

One place where we do NOT follow diffusers: its decoder chunks run over all clips' frames laid end to end, (b t), so
with B > 1 and a ``decode_chunk_size`` that does not divide T one chunk holds the end of one clip and the start of
the next, and the temporal decoder's layers mix the two clips. We cut each clip into its own chunks: a clip decodes
the same alone or in a batch. Where diffusers' chunks are stretches of one clip (B = 1, or chunks that divide T)
the two agree (tested).

(diffusers given a *tensor* image skips the 224 resize before CLIP; we always resize, as it does for PIL images and
as Stability's code does.) One video per image; all of it runs in float32 or the models' dtypes, with no upcasting
of a float16 VAE.
"""

from __future__ import annotations

from numbers import Integral

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from minivdm.diffusion.edm import SVD_NUM_STEPS, SVD_SIGMA_MAX, SVD_SIGMA_MIN, sample_euler_edm
from minivdm.methods.text_to_video_dit import draw_noise
from minivdm.models.svd_unet import SVDUNet
from minivdm.validation import check_image, check_number, check_positive_int, check_tensor, check_video

CLIP_IMAGE_SIZE = 224  # SVD's pipeline resizes every image to 224 x 224 for CLIP, whatever the encoder's config
# OpenAI CLIP's per-channel statistics, which SVD's feature_extractor (a CLIPImageProcessor) normalizes with
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MOTION_BUCKETS = 256  # SVD's motion_bucket_id runs over 0 .. 255 (127 by default)


# ------------------------------------------------------------------------------------------------
# The image's two conditions


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A normalized 1D Gaussian of odd ``size`` taps centred on the middle one."""
    offsets = torch.arange(size, dtype=dtype, device=device) - size // 2
    sigma = torch.tensor(sigma, dtype=dtype, device=device)
    weights = torch.exp(-offsets**2 / (2 * sigma**2))
    return weights / weights.sum()


def resize_with_antialiasing(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size): a Gaussian blur, then a bicubic resize with aligned corners.

    The blur's sigma on each axis is (old / new - 1) / 2 (skimage's antialiasing rule; 0.001, no blur to speak of,
    when enlarging) over max(4 sigma, 3) taps, rounded up to odd, with reflected borders: diffusers' resize for SVD's
    CLIP input, written out."""
    check_image(image, "image")
    height, width = image.shape[-2:]
    channels = image.shape[1]
    blurred = image
    # blur along W (the last axis) first, then along H, as diffusers does
    for axis, (old, new) in ((3, (width, size[1])), (2, (height, size[0]))):
        sigma = max((old / new - 1.0) / 2.0, 0.001)
        taps = int(max(4.0 * sigma, 3))
        taps += 1 - taps % 2
        kernel = _gaussian_kernel(taps, sigma, image.dtype, image.device)
        half = taps // 2
        if axis == 3:
            padded = F.pad(blurred, (half, half, 0, 0), mode="reflect")
            weight = repeat(kernel, "k -> c 1 1 k", c=channels)
        else:
            padded = F.pad(blurred, (0, 0, half, half), mode="reflect")
            weight = repeat(kernel, "k -> c 1 k 1", c=channels)
        blurred = F.conv2d(padded, weight, groups=channels)
    return F.interpolate(blurred, size=size, mode="bicubic", align_corners=True)


@torch.no_grad()
def embed_clip_pixels(image_encoder, pixels: torch.Tensor, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """c_clip (B, 1, D): the projected CLIP embedding (``image_embeds`` of transformers'
    ``CLIPVisionModelWithProjection``) of pixels (B, 3, S, S) in [0, 1] at the encoder's input size, normalized with
    CLIP's ``mean`` and ``std``."""
    check_image(pixels, "pixels")
    mean = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    pixels = (pixels - mean) / std
    parameter = next(image_encoder.parameters())
    embedding = image_encoder(pixels.to(device=parameter.device, dtype=parameter.dtype)).image_embeds
    return rearrange(embedding, "b d -> b 1 d")


def encode_clip_image(image_encoder, image: torch.Tensor, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """c_clip (B, 1, D) of images (B, 3, H, W) in [-1, 1], resized to 224 x 224 with antialiasing (SVD's way),
    mapped to [0, 1] and embedded by ``embed_clip_pixels``."""
    check_image(image, "image")
    pixels = resize_with_antialiasing(image, (CLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE))
    return embed_clip_pixels(image_encoder, (pixels + 1.0) / 2.0, mean, std)


@torch.no_grad()
def encode_vae_image(vae, image: torch.Tensor, noise_aug_strength: float, noise: torch.Tensor) -> torch.Tensor:
    """e (B, 4, h, w) = mode(E(x_0 + s n_aug)): the VAE posterior's mean for the noise-augmented image, unscaled."""
    check_image(image, "image")
    check_tensor(noise, "noise", ndim=4, layout=f"(B, 3, H, W) like image {tuple(image.shape)}")
    if noise.shape != image.shape:
        raise ValueError(f"noise must be shaped like image {tuple(image.shape)}, got {tuple(noise.shape)}")
    parameter = next(vae.parameters())
    augmented = image + noise_aug_strength * noise.to(image)
    return vae.encode(augmented.to(device=parameter.device, dtype=parameter.dtype)).latent_dist.mode()


def svd_added_time_ids(fps: float, motion_bucket_id: int, noise_aug_strength: float, batch: int) -> torch.Tensor:
    """u (B, 3) = (fps - 1, motion_bucket_id, noise_aug_strength) for each clip: SVD was conditioned on fps - 1."""
    return torch.tensor([[fps - 1, motion_bucket_id, noise_aug_strength]], dtype=torch.float32).repeat(batch, 1)


def frame_guidance_scales(min_guidance_scale: float, max_guidance_scale: float, num_frames: int) -> torch.Tensor:
    """w_f (T,): the guidance scale of each frame, linear from ``min_guidance_scale`` on the first frame to
    ``max_guidance_scale`` on the last (one frame gets ``min_guidance_scale``)."""
    check_positive_int(num_frames, "num_frames")
    return torch.linspace(min_guidance_scale, max_guidance_scale, num_frames)


# ------------------------------------------------------------------------------------------------
# Sampling and decoding


@torch.no_grad()
def sample_image_to_video_latents(unet: SVDUNet, image_embedding: torch.Tensor, image_latent: torch.Tensor,
                                  added_time_ids: torch.Tensor, noise: torch.Tensor, *, num_steps: int = SVD_NUM_STEPS,
                                  min_guidance_scale: float = 1.0, max_guidance_scale: float = 3.0,
                                  sigma_min: float = SVD_SIGMA_MIN, sigma_max: float = SVD_SIGMA_MAX,
                                  progress: bool = True) -> torch.Tensor:
    """z_0 (B, 4, T, h, w) from ``noise`` (B, 4, T, h, w), N(0, I), by EDM's Euler sampler with per-frame guidance.

    image_embedding (B, 1, D) is c_clip, image_latent (B, 4, h, w) is e, added_time_ids (B, 3) is u. Guided when
    max_guidance_scale > 1; both branches then run in one batch: [unconditional; conditional]. The latents stay
    float32 between steps; the U-Net sees them in its own dtype."""
    check_video(noise, "noise")
    batch, _, num_frames, height, width = noise.shape
    if tuple(image_latent.shape) != (batch, noise.shape[1], height, width):
        raise ValueError(f"image_latent must be (B, C, h, w) = {(batch, noise.shape[1], height, width)}, the image's "
                         f"latent for each clip of noise {tuple(noise.shape)}, got {tuple(image_latent.shape)}")
    parameter = next(unet.parameters())
    device, dtype = parameter.device, parameter.dtype
    guided = max_guidance_scale > 1
    image_frames = repeat(image_latent, "b c h w -> b c t h w", t=num_frames).to(device, dtype)
    image_embedding, added_time_ids = image_embedding.to(device, dtype), added_time_ids.to(device, dtype)
    if guided:
        # the unconditional branch: no image at all, neither its latent nor its CLIP embedding
        image_frames = torch.cat([torch.zeros_like(image_frames), image_frames])
        image_embedding = torch.cat([torch.zeros_like(image_embedding), image_embedding])
        added_time_ids = torch.cat([added_time_ids, added_time_ids])
    w = rearrange(frame_guidance_scales(min_guidance_scale, max_guidance_scale, num_frames), "t -> 1 1 t 1 1")
    w = w.to(device=device)

    def model_fn(scaled_y: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        if guided:
            scaled_y, c_noise = torch.cat([scaled_y, scaled_y]), torch.cat([c_noise, c_noise])
        sample = torch.cat([scaled_y.to(dtype), image_frames], dim=1)  # [c_in y ; e] on the channel axis
        v = unet(sample, c_noise.to(dtype), image_embedding, added_time_ids).float()
        if not guided:
            return v
        v_uncond, v_cond = v.chunk(2)
        return v_uncond + w * (v_cond - v_uncond)

    return sample_euler_edm(model_fn, noise.to(device=device, dtype=torch.float32), num_steps=num_steps,
                            sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=1.0, parameterization="v",
                            progress=progress)


@torch.no_grad()
def decode_svd_latents(vae, latents: torch.Tensor, decode_chunk_size: int) -> torch.Tensor:
    """(B, C, T, h, w) latents -> (B, 3, T, H, W) video in [-1, 1] with SVD's temporal decoder, each clip
    ``decode_chunk_size`` frames at a time, each chunk decoded as a clip of its own length (``num_frames``); a chunk
    never spans two clips (see the module docstring)."""
    check_video(latents, "latents")
    check_positive_int(decode_chunk_size, "decode_chunk_size")
    parameter = next(vae.parameters())
    clips = []
    for clip in latents:
        frames = rearrange(clip, "c t h w -> t c h w")
        frames = (1 / vae.config.scaling_factor * frames).to(device=parameter.device, dtype=parameter.dtype)
        decoded = [vae.decode(chunk, num_frames=chunk.shape[0]).sample for chunk in frames.split(decode_chunk_size)]
        clips.append(rearrange(torch.cat(decoded), "t c h w -> c t h w"))
    return torch.stack(clips).float().clamp(-1, 1)


# ------------------------------------------------------------------------------------------------
# The whole pipeline


def _check_motion_bucket_id(motion_bucket_id) -> int:
    why = (f"it names one of SVD's {MOTION_BUCKETS} motion buckets, 0 (still) to {MOTION_BUCKETS - 1} "
           f"(most motion), 127 by default")
    if isinstance(motion_bucket_id, bool) or not isinstance(motion_bucket_id, (Integral, float)):
        raise TypeError(f"motion_bucket_id must be an int: {why}; got {type(motion_bucket_id).__name__}")
    if not isinstance(motion_bucket_id, Integral):
        raise ValueError(f"motion_bucket_id must be a whole number: {why}; got {motion_bucket_id}")
    if not 0 <= motion_bucket_id < MOTION_BUCKETS:
        raise ValueError(f"motion_bucket_id must be in 0..{MOTION_BUCKETS - 1}: {why}; got {motion_bucket_id}")
    return int(motion_bucket_id)


def check_start_image(image: torch.Tensor, unet, vae) -> None:
    """The image a video starts from: (B, 3, H, W) in [-1, 1], H and W multiples of what the VAE and then the U-Net
    (either with ``config.block_out_channels``) downsample by."""
    check_image(image, "image")
    if image.shape[1] != 3:
        raise ValueError(f"image must be (B, 3, H, W), RGB with channels first, got {tuple(image.shape)} (a "
                         f"channels-last (B, H, W, 3) image needs rearrange(image, 'b h w c -> b c h w'))")
    low, high = image.min().item(), image.max().item()
    if not (-1 - 1e-6 <= low and high <= 1 + 1e-6):
        raise ValueError(f"image values must be in [-1, 1] (uint8 pixels p: p / 127.5 - 1), "
                         f"got [{low:.4g}, {high:.4g}]")
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    unet_factor = 2 ** (len(unet.config.block_out_channels) - 1)
    multiple = vae_factor * unet_factor
    height, width = image.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(f"H and W of image (B, 3, H, W) must be multiples of {multiple} (the VAE downsamples "
                         f"{vae_factor}x, then the U-Net {unet_factor}x), got {height}x{width}")


def check_image_to_video_inputs(unet: SVDUNet, vae, image: torch.Tensor, *, num_frames: int, num_steps: int,
                                min_guidance_scale: float, max_guidance_scale: float, fps: float,
                                motion_bucket_id: int, noise_aug_strength: float, decode_chunk_size: int) -> None:
    """Every argument of ``generate_image_to_video``, refused by name before any model runs."""
    if not isinstance(unet, SVDUNet):
        raise TypeError(f"unet must be minivdm's SVDUNet (load one with load_svd_unet), got {type(unet).__name__}")
    check_start_image(image, unet, vae)
    if unet.config.in_channels != 2 * vae.config.latent_channels:
        raise ValueError(f"the U-Net takes {unet.config.in_channels} channels; SVD feeds it the noisy latent and the "
                         f"image's latent, 2 x {vae.config.latent_channels} = {2 * vae.config.latent_channels}")
    check_positive_int(num_frames, "num_frames")
    check_positive_int(num_steps, "num_steps")
    check_positive_int(decode_chunk_size, "decode_chunk_size")
    min_guidance_scale = check_number(min_guidance_scale, "min_guidance_scale")
    max_guidance_scale = check_number(max_guidance_scale, "max_guidance_scale")
    if min_guidance_scale > max_guidance_scale:
        raise ValueError(f"min_guidance_scale (the first frame's guidance) must be <= max_guidance_scale (the last "
                         f"frame's), got {min_guidance_scale} > {max_guidance_scale}")
    if check_number(fps, "fps") <= 0:
        raise ValueError(f"fps must be > 0 (frames per second; SVD is conditioned on fps - 1), got {fps}")
    _check_motion_bucket_id(motion_bucket_id)
    if check_number(noise_aug_strength, "noise_aug_strength") < 0:
        raise ValueError(f"noise_aug_strength must be >= 0 (the std of the noise added to the image), "
                         f"got {noise_aug_strength}")


@torch.no_grad()
def generate_image_to_video(unet: SVDUNet, vae, image_encoder, image: torch.Tensor, *, num_frames: int | None = None,
                            num_steps: int = SVD_NUM_STEPS, min_guidance_scale: float = 1.0,
                            max_guidance_scale: float = 3.0, fps: float = 7, motion_bucket_id: int = 127,
                            noise_aug_strength: float = 0.02, decode_chunk_size: int | None = None,
                            sigma_min: float = SVD_SIGMA_MIN, sigma_max: float = SVD_SIGMA_MAX,
                            generator: torch.Generator | None = None, output: str = "video",
                            progress: bool = True) -> torch.Tensor:
    """Videos (B, 3, T, H, W) in [-1, 1] that start from ``image`` (B, 3, H, W) in [-1, 1] (uint8 pixels p: p / 127.5
    - 1), one per image. ``output="latents"``: z_0 (B, 4, T, h, w) instead.

    unet: minivdm's ``SVDUNet``; vae: diffusers' ``AutoencoderKLTemporalDecoder``; image_encoder: transformers'
    ``CLIPVisionModelWithProjection``. num_frames defaults to the U-Net's (14 for SVD, 25 for SVD-XT),
    decode_chunk_size to num_frames (all frames in one chunk); the rest (sigma_min and sigma_max: the scheduler
    config's) are SVD's defaults. The noise comes from ``generator`` in diffusers' order, so a seed gives
    ``StableVideoDiffusionPipeline``'s video for the same image."""
    num_frames = unet.config.num_frames if num_frames is None else num_frames
    decode_chunk_size = num_frames if decode_chunk_size is None else decode_chunk_size
    if output not in ("video", "latents"):
        raise ValueError(f"output must be 'video' or 'latents', got {output!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    check_image_to_video_inputs(unet, vae, image, num_frames=num_frames, num_steps=num_steps,
                                min_guidance_scale=min_guidance_scale, max_guidance_scale=max_guidance_scale, fps=fps,
                                motion_bucket_id=motion_bucket_id, noise_aug_strength=noise_aug_strength,
                                decode_chunk_size=decode_chunk_size)
    parameter = next(unet.parameters())
    batch, _, height, width = image.shape
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    image_embedding = encode_clip_image(image_encoder, image)
    # the two draws, in diffusers' order: the image's augmentation noise, then the initial noise (its layout)
    generator_device = generator.device if generator is not None else image.device
    noise_aug = torch.randn(image.shape, generator=generator, device=generator_device, dtype=image.dtype)
    image_latent = encode_vae_image(vae, image, noise_aug_strength, noise_aug.to(image.device))
    latent_shape = (batch, vae.config.latent_channels, num_frames, height // vae_factor, width // vae_factor)
    noise = draw_noise(latent_shape, generator, parameter.dtype, parameter.device)
    added_time_ids = svd_added_time_ids(fps, motion_bucket_id, noise_aug_strength, batch)

    latents = sample_image_to_video_latents(unet, image_embedding, image_latent, added_time_ids, noise,
                                            num_steps=num_steps, min_guidance_scale=min_guidance_scale,
                                            max_guidance_scale=max_guidance_scale, sigma_min=sigma_min,
                                            sigma_max=sigma_max, progress=progress)
    return latents if output == "latents" else decode_svd_latents(vae, latents, decode_chunk_size)
