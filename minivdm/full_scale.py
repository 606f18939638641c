"""Running the published checkpoints (opt-in, GPU recommended): `python -m minivdm generate ...`.

Nothing here downloads. ``--weights`` is either a local diffusers pipeline folder or a Hugging Face
repository id that is already in the local cache (``huggingface-cli download <id>`` on a machine with
internet, or a copied cache); see README.md, "Full scale". The same code path runs on CPU in the tests
with tiny checkpoints in the same folder layout.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import torch

from minivdm.configs.modelscope import HF_IDS as VIDEO_HF_IDS
from minivdm.configs.modelscope import MODELSCOPE_T2V
from minivdm.configs.stable_diffusion import CONFIGS as IMAGE_CONFIGS
from minivdm.configs.stable_diffusion import HF_IDS as IMAGE_HF_IDS

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
VIDEO_CONFIGS = {MODELSCOPE_T2V.name: MODELSCOPE_T2V}


def resolve_weights(weights: str | None, config_name: str, hf_ids: dict[str, str]) -> Path:
    """A local folder, or the cached snapshot of a Hugging Face id (the config's own id by default)."""
    if weights is not None and Path(weights).is_dir():
        return Path(weights)
    repo_id = weights or hf_ids.get(config_name)
    if repo_id is None:
        raise FileNotFoundError(f"--weights {weights!r} is not a folder, and config {config_name!r} has no Hugging Face id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{repo_id} is not in the local Hugging Face cache and minivdm never downloads. On a machine with internet "
            f"run `huggingface-cli download {repo_id}` (or pass --weights /path/to/a/local/copy)."
        ) from None


def check_architecture(loaded, expected, config_name: str) -> None:
    """The checkpoint must be the architecture the named config describes."""
    differences = [f.name for f in fields(expected) if f.name not in ("name", "sample_size")
                   and getattr(loaded, f.name) != getattr(expected, f.name)]
    if differences:
        raise ValueError(f"the weights do not have the {config_name} architecture: they differ in {differences}")


def _device_and_dtype(device: str | None, dtype: str) -> tuple[str, torch.dtype]:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # half precision convolutions are slow or unsupported on CPU
    return device, DTYPES[dtype] if device != "cpu" else torch.float32


def load_checked_components(config_name: str, configs: dict, hf_ids: dict, load_components, *, weights: str | None,
                            device: str | None, dtype: str, check_config: bool):
    """The components (unet, vae, text_encoder, tokenizer, settings) of a named config's pipeline, after checking the U-Net is that architecture."""
    if config_name not in configs:
        raise ValueError(f"config must be one of {sorted(configs)}, got {config_name!r}")
    device, torch_dtype = _device_and_dtype(device, dtype)
    folder = resolve_weights(weights, config_name, hf_ids)
    components = load_components(folder, dtype=torch_dtype, device=device)
    if check_config:
        check_architecture(components[0].config, configs[config_name], config_name)
    return components


def generate_image(config_name: str, prompt: str, out: str | Path, *, weights: str | None = None, steps: int = 50,
                   guidance_scale: float = 7.5, seed: int = 0, device: str | None = None, dtype: str = "fp16",
                   height: int | None = None, width: int | None = None, check_config: bool = True) -> Path:
    """Text-to-image with our U-Net and DDIM; the image is written as PNG."""
    import imageio.v3 as iio

    from minivdm.methods.text_to_image import load_components, text_to_image

    unet, vae, text_encoder, tokenizer, settings = load_checked_components(
        config_name, IMAGE_CONFIGS, IMAGE_HF_IDS, load_components, weights=weights, device=device, dtype=dtype,
        check_config=check_config)
    images = text_to_image(unet, vae, text_encoder, tokenizer, settings, [prompt], num_steps=steps,
                           guidance_scale=guidance_scale, height=height, width=width,
                           generator=torch.Generator().manual_seed(seed))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pixels = (images[0].float().permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    iio.imwrite(out, pixels)
    return out


def generate_video(config_name: str, prompt: str, out: str | Path, *, weights: str | None = None, steps: int = 50,
                   guidance_scale: float = 9.0, num_frames: int = 16, seed: int = 0, device: str | None = None,
                   dtype: str = "fp16", height: int | None = None, width: int | None = None, fps: int = 8,
                   check_config: bool = True) -> Path:
    """Text-to-video with our 3D U-Net and DDIM (ModelScope); the clip is written as .mp4 or .gif."""
    from minivdm.io.video_files import write_video
    from minivdm.methods.text_to_video import load_video_components, text_to_video

    unet, vae, text_encoder, tokenizer, settings = load_checked_components(
        config_name, VIDEO_CONFIGS, VIDEO_HF_IDS, load_video_components, weights=weights, device=device, dtype=dtype,
        check_config=check_config)
    video = text_to_video(unet, vae, text_encoder, tokenizer, settings, [prompt], num_frames=num_frames,
                          num_steps=steps, guidance_scale=guidance_scale, height=height, width=width,
                          generator=torch.Generator().manual_seed(seed))
    return write_video(out, video[0].cpu(), fps=fps)


def text2video_zero_steps(steps: int) -> tuple[int, int]:
    """(start_index, delta_t) at diffusers' defaults (t1 = 47, t0 = 44 of 50 steps), kept inside shorter runs."""
    t1 = max(0, min(47, steps - 2))
    t0 = max(0, t1 - 3)
    return steps - t1 - 1, t1 - t0


def read_foreground_mask(path: str | Path) -> torch.Tensor:
    """An image file (white = foreground) -> (H, W) in [0, 1]."""
    import imageio.v3 as iio

    try:
        image = torch.as_tensor(iio.imread(path)).float()
    except Exception as error:  # imageio raises many kinds; one message names the file and what it needs
        raise ValueError(f"--foreground-mask {path}: not a readable image ({error}); give a PNG or JPEG, white on the "
                         f"objects of frame 1, black on the background") from None
    if image.ndim == 3:
        image = image[..., :3].mean(-1)  # grey, ignoring an alpha channel
    if image.ndim != 2:
        raise ValueError(f"--foreground-mask {path}: expected one image (H, W) or (H, W, channels), got {tuple(image.shape)}")
    return (image / 255 if image.max() > 1 else image).clamp(0, 1)


def generate_zero_shot_video(config_name: str, prompt: str, out: str | Path, *, motion="right",
                             motion_strength: float = 1.5, weights: str | None = None, steps: int = 50,
                             guidance_scale: float = 7.5, num_frames: int = 8, seed: int = 0, device: str | None = None,
                             dtype: str = "fp16", height: int | None = None, width: int | None = None, fps: int = 4,
                             check_config: bool = True, foreground_mask: str | Path | None = None) -> Path:
    """Text2Video-Zero with an image checkpoint (sd15, sd14): our U-Net with cross-frame attention, the
    latent motion dynamics (``motion_strength`` = lambda, latent pixels per frame), .mp4 or .gif.
    ``foreground_mask``: an image file, white on the objects, of frame 1 (any size: it is resized to the
    latents), turns on background smoothing with M^k = W_k(M^1)."""
    from minivdm.io.video_files import write_video
    from minivdm.methods.text2video_zero import frame_shifts, text2video_zero_latents, warp_masks
    from minivdm.methods.text_to_image import latent_size, load_components
    from minivdm.methods.text_to_video import decode_frames

    if config_name not in IMAGE_CONFIGS:
        raise ValueError(f"text2video-zero turns an image model into a video model: --config must be one of "
                         f"{sorted(IMAGE_CONFIGS)}, got {config_name!r}")
    shifts = frame_shifts(num_frames, motion, motion_strength)
    mask_image = None if foreground_mask is None else read_foreground_mask(foreground_mask)  # refused before loading
    unet, vae, text_encoder, tokenizer, settings = load_checked_components(
        config_name, IMAGE_CONFIGS, IMAGE_HF_IDS, load_components, weights=weights, device=device, dtype=dtype,
        check_config=check_config)
    start_index, delta_t = text2video_zero_steps(steps)
    latent_hw = latent_size(unet, vae, height, width)
    masks = None
    if mask_image is not None:  # area-averaged to the latents: a latent pixel half on the object is 0.5
        first = torch.nn.functional.interpolate(mask_image[None, None], size=latent_hw, mode="area")
        masks = warp_masks(first, shifts[None]).to(unet.conv_in.weight.device)
    latents = text2video_zero_latents(unet, text_encoder, tokenizer, settings, prompt, num_frames=num_frames,
                                      shifts=shifts, delta_t=delta_t, start_index=start_index, num_steps=steps,
                                      guidance_scale=guidance_scale, latent_hw=latent_hw, background_masks=masks,
                                      generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        video = decode_frames(vae, latents)
    return write_video(out, video[0].clamp(-1, 1).cpu(), fps=fps)
