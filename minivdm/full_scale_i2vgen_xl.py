r"""`minivdm generate --config i2vgen-xl --image FILE --prompt TEXT`: I2VGen-XL image-to-video at full scale, with our
I2VGenXLUNet (``minivdm.models.i2vgen_xl_unet``) and our sampling loop (``minivdm.methods.i2vgen_xl``). Opt-in, a GPU
recommended (fp16 by default there); nothing here downloads (``minivdm.full_scale``).

``--weights`` is a local I2VGen-XL pipeline folder (unet/, vae/, text_encoder/, tokenizer/, image_encoder/,
feature_extractor/, scheduler/, as ``huggingface-cli download ali-vilab/i2vgen-xl --local-dir FOLDER`` writes it), or a
Hugging Face id already in the local cache (default: ``minivdm.configs.i2vgen_xl.HF_IDS``). The scheduler config is
read into our DDIM (``minivdm.diffusion.scheduler_config``: every option honoured or refused by name).

The image file may have any size: like diffusers' pipeline, it is scaled with a box filter until it covers --width x
--height (default 1280 x 704, the pipeline's) and its centre is cut out; the video has that size and is written at
--fps, the frame rate I2VGen-XL is also conditioned on. Everything a user can get wrong (the sizes, the numbers, the
scheduler, the architecture of the weights, the image file) is refused before a weight is read. Memory: --dtype fp16
(the default on a GPU) and --decode-chunk-size (frames the VAE decodes at once, default 1). The same path runs on the
CPU in the tests with a tiny pipeline folder in the published layout.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from minivdm.configs.i2vgen_xl import HF_IDS, I2VGEN_XL
from minivdm.full_scale import _device_and_dtype, check_architecture, local_pipeline_folder
from minivdm.full_scale_svd import read_json, read_rgb_pixels
from minivdm.methods.i2vgen_xl import (
    I2VGEN_XL_FPS,
    I2VGEN_XL_GUIDANCE,
    I2VGEN_XL_NUM_FRAMES,
    I2VGEN_XL_NUM_STEPS,
    I2VGEN_XL_SIZE,
)

CONFIG_NAME = I2VGEN_XL.name  # "i2vgen-xl"
PIPELINE_FOLDER = ("I2VGen-XL pipeline folder (unet/, vae/, text_encoder/, tokenizer/, image_encoder/, "
                   "feature_extractor/, scheduler/)")


def _read(folder: Path, part: str) -> dict:
    return read_json(folder / part, f"an {PIPELINE_FOLDER}")


def _square_size(value) -> int | None:
    """An image processor's size entry: an int, or {"height": n, "width": n} of a square."""
    if isinstance(value, dict) and value.get("height") == value.get("width"):
        value = value.get("height")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_folder(folder: Path, *, check_config: bool):
    """Before any weight is read: the U-Net is I2VGen-XL's architecture (with ``check_config``), the VAE is the image
    AutoencoderKL with 4 latent channels, the text tokens and the image embedding have the U-Net's cross-attention
    width, the feature extractor crops to the image encoder's input size, the scheduler config is one our DDIM
    honours. Returns (multiple the video's sides must be, SamplerSettings, (clip_mean, clip_std))."""
    from minivdm.methods.text_to_image import SamplerSettings
    from minivdm.models.i2vgen_xl_unet import I2VGenXLUNetConfig

    unet = I2VGenXLUNetConfig.from_diffusers(_read(folder, "unet/config.json"), name=str(folder))
    if check_config:
        check_architecture(unet, I2VGEN_XL, CONFIG_NAME)
    vae = _read(folder, "vae/config.json")
    if vae.get("_class_name") != "AutoencoderKL" or vae.get("latent_channels", 4) != 4:
        raise ValueError(f"the VAE is a {vae.get('_class_name')} with latent_channels={vae.get('latent_channels')}; "
                         f"I2VGen-XL decodes frame by frame with diffusers' AutoencoderKL of 4 latent channels "
                         f"(vae/config.json)")
    width = unet.cross_attention_dim
    text_encoder = _read(folder, "text_encoder/config.json")
    image_encoder = _read(folder, "image_encoder/config.json")
    for config, key, what in ((text_encoder, "hidden_size", "text encoder"), (image_encoder, "projection_dim",
                                                                             "image encoder")):
        if config.get(key) != width:
            raise ValueError(f"the {what} has {key}={config.get(key)}; the U-Net attends to tokens of "
                             f"cross_attention_dim={width}")
    if not (folder / "tokenizer").is_dir():
        raise FileNotFoundError(f"{folder} is not an {PIPELINE_FOLDER}: it has no tokenizer/")
    extractor = _read(folder, "feature_extractor/preprocessor_config.json")
    statistics = []
    for key in ("image_mean", "image_std"):
        value = extractor.get(key)
        if not (isinstance(value, list) and len(value) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
            raise ValueError(f"the feature extractor has {key}={value!r}; expected three numbers, one per RGB "
                             f"channel (feature_extractor/preprocessor_config.json)")
        statistics.append(tuple(float(v) for v in value))
    if min(statistics[1]) <= 0:
        raise ValueError(f"the feature extractor has image_std={list(statistics[1])}; each must be > 0")
    crop, image_size = _square_size(extractor.get("crop_size")), image_encoder.get("image_size", 224)
    if crop != image_size:
        raise ValueError(f"the feature extractor crops to {extractor.get('crop_size')!r} but the image encoder takes "
                         f"image_size={image_size}: they must agree (the CLIP view is resized to the encoder's size)")
    settings = SamplerSettings.from_scheduler_config(_read(folder, "scheduler/scheduler_config.json"))
    multiple = 2 ** (len(vae.get("block_out_channels", (128, 256, 512, 512))) - 1) * 2 ** (
        len(unet.block_out_channels) - 1)
    return multiple, settings, tuple(statistics)


def fit_image(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H0, W0, 3) uint8 -> (height, width, 3) uint8: scaled with PIL's box filter until it covers height x width,
    then the centre cut out (diffusers' I2VGen-XL preprocessing, and the original repository's CenterCropWide)."""
    import PIL.Image

    image = PIL.Image.fromarray(pixels.numpy())
    scale = min(image.width / width, image.height / height)
    # diffusers floors (w / scale, h / scale); the max keeps a rounding below the target from cutting past the edge
    covering = (max(width, int(image.width // scale)), max(height, int(image.height // scale)))
    image = image.resize(covering, resample=PIL.Image.BOX)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return torch.from_numpy(np.array(image.crop((left, top, left + width, top + height))))


def check_options(*, frames: int, steps: int, guidance: float, fps: int, decode_chunk_size: int, height: int,
                  width: int) -> None:
    """The command's numbers, refused by option name before any file is read."""
    for name, value in (("--frames", frames), ("--steps", steps), ("--fps", fps),
                        ("--decode-chunk-size", decode_chunk_size), ("--height", height), ("--width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if not math.isfinite(guidance):
        raise ValueError(f"--guidance must be a finite number (default {I2VGEN_XL_GUIDANCE}), got {guidance}")


def generate_i2vgen_xl_video(weights: str | None, image_path: str | Path, prompt: str, out: str | Path, *,
                             negative_prompt: str = "", frames: int = I2VGEN_XL_NUM_FRAMES,
                             steps: int = I2VGEN_XL_NUM_STEPS, guidance: float = I2VGEN_XL_GUIDANCE,
                             fps: int = I2VGEN_XL_FPS, decode_chunk_size: int = 1, height: int | None = None,
                             width: int | None = None, seed: int = 0, device: str | None = None,
                             dtype: str | None = None, check_config: bool = True) -> Path:
    """An I2VGen-XL video of ``prompt`` starting from the image at ``image_path`` (fitted to width x height, default
    1280 x 704), written as .mp4 or .gif at ``fps`` (defaults: diffusers' pipeline's, 16 frames at 16 fps, 50 steps,
    guidance 9)."""
    from transformers import CLIPVisionModelWithProjection

    from minivdm.io.video_files import write_video
    from minivdm.methods.i2vgen_xl import generate_i2vgen_xl
    from minivdm.methods.text_to_image import load_components
    from minivdm.models.i2vgen_xl_unet import I2VGenXLUNet

    height = I2VGEN_XL_SIZE[0] if height is None else height
    width = I2VGEN_XL_SIZE[1] if width is None else width
    if Path(out).suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"{CONFIG_NAME} writes a video: --out must end in .mp4 or .gif, got {str(out)!r}")
    check_options(frames=frames, steps=steps, guidance=guidance, fps=fps, decode_chunk_size=decode_chunk_size,
                  height=height, width=width)
    folder = local_pipeline_folder(weights, CONFIG_NAME, HF_IDS, PIPELINE_FOLDER)
    multiple, settings, (clip_mean, clip_std) = check_folder(folder, check_config=check_config)
    if height % multiple or width % multiple:
        raise ValueError(f"--width x --height is {width}x{height}; both must be multiples of {multiple} (the VAE's "
                         f"factor times the U-Net's), e.g. {I2VGEN_XL_SIZE[1]}x{I2VGEN_XL_SIZE[0]}, the pipeline's")
    pixels = fit_image(read_rgb_pixels(image_path), height, width)
    image = (pixels.permute(2, 0, 1).float() / 127.5 - 1).unsqueeze(0)
    device, torch_dtype = _device_and_dtype(device, dtype or "fp16")

    unet, vae, text_encoder, tokenizer, _ = load_components(folder, dtype=torch_dtype, device=device,
                                                             unet_class=I2VGenXLUNet)
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder", torch_dtype=torch_dtype)
    image_encoder = image_encoder.to(device).eval()
    video = generate_i2vgen_xl(unet.eval(), vae, text_encoder, tokenizer, image_encoder, settings, image.to(device),
                               prompt, negative_prompt=negative_prompt, num_frames=frames, num_steps=steps,
                               guidance_scale=guidance, fps=fps, decode_chunk_size=decode_chunk_size,
                               clip_mean=clip_mean, clip_std=clip_std, generator=torch.Generator().manual_seed(seed))
    return write_video(out, video[0].cpu(), fps=fps)
