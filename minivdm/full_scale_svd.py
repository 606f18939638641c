r"""`minivdm generate --config svd --image FILE` (or svd-xt): Stable Video Diffusion image-to-video at full scale, with
our SVDUNet (``minivdm.models.svd_unet``) and our sampling loop (``minivdm.methods.image_to_video``). Opt-in, a GPU
recommended (fp16 by default there, as the model cards load it); nothing here downloads (``minivdm.full_scale``).

``--weights`` is a local SVD pipeline folder (unet/, vae/, image_encoder/, feature_extractor/, scheduler/, as
``huggingface-cli download stabilityai/stable-video-diffusion-img2vid-xt --local-dir FOLDER`` writes it), or a Hugging
Face id already in the local cache (default: the config's own, ``minivdm.configs.svd.HF_IDS``). The scheduler must be
SVD's EulerDiscreteScheduler (v-prediction, Karras sigmas, continuous timesteps c_noise = log(sigma) / 4): our EDM
Euler sampler reads sigma_min and sigma_max from it. The video has the image's size (SVD was trained at 1024x576) and
is written at --fps, the frame rate SVD is also conditioned on (u = (fps - 1, motion_bucket_id, noise_aug_strength)).

Everything a user can get wrong (the image's size, the micro-conditioning, the scheduler, the architecture of the
weights) is refused before a weight is read. Memory: --dtype fp16 (the default on a GPU) and --decode-chunk-size
(frames decoded at once). There is no CPU offload: our pipeline places each input on its model's device, which
accelerate's offload hooks move under it. The same path runs on the CPU in the tests with a tiny pipeline folder in
the published layout.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from minivdm.configs.svd import HF_IDS, SVD_CONFIGS, svd_unet_config
from minivdm.diffusion.edm import SVD_NUM_STEPS
from minivdm.full_scale import _device_and_dtype, check_architecture, local_pipeline_folder
from minivdm.methods.image_to_video import CLIP_MEAN, CLIP_STD, MOTION_BUCKETS

SVD_LAYOUT = "unet/, vae/, image_encoder/, feature_extractor/, scheduler/"
SVD_SIZE = (1024, 576)  # width x height of SVD's training videos (and of the model cards' example image)
# the scheduler options our EDM Euler sampler implements, at SVD's values (its scheduler_config.json), and
# EulerDiscreteScheduler's defaults, which a config without the key gets
SVD_SCHEDULER = {"prediction_type": "v_prediction", "use_karras_sigmas": True, "timestep_type": "continuous",
                 "use_exponential_sigmas": False, "use_beta_sigmas": False, "final_sigmas_type": "zero"}
EULER_DEFAULTS = {"prediction_type": "epsilon", "use_karras_sigmas": False, "timestep_type": "discrete",
                  "use_exponential_sigmas": False, "use_beta_sigmas": False, "final_sigmas_type": "zero"}
# options that change nothing once the Karras sigmas run from the config's explicit sigma_max to sigma_min
SCHEDULER_IRRELEVANT = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                        "interpolation_type", "timestep_spacing", "steps_offset", "rescale_betas_zero_snr",
                        "_class_name", "_diffusers_version"}


def read_json(path: Path, layout: str = f"an SVD pipeline folder ({SVD_LAYOUT})") -> dict:
    """A pipeline folder's component/file.json; a missing one refused, naming the ``layout`` the folder should have."""
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent.parent} is not {layout}: it has no {path.parent.name}/{path.name}")
    return json.loads(path.read_text())


def read_svd_scheduler(config: dict) -> tuple[float, float]:
    """(sigma_min, sigma_max) of SVD's EulerDiscreteScheduler config; any option our sampler does not implement is
    refused by name."""
    if config.get("_class_name") != "EulerDiscreteScheduler":
        raise ValueError(f"the scheduler is a {config.get('_class_name')}; minivdm samples SVD with EDM's Euler "
                         f"sampler, which is SVD's EulerDiscreteScheduler (scheduler/scheduler_config.json)")
    unknown = sorted(set(config) - set(SVD_SCHEDULER) - SCHEDULER_IRRELEVANT - {"sigma_min", "sigma_max"})
    if unknown:
        raise ValueError(f"the scheduler config has {unknown}, options minivdm does not know")
    for key, value in SVD_SCHEDULER.items():
        given = config.get(key, EULER_DEFAULTS[key])
        if given != value:
            raise ValueError(f"the scheduler has {key}={given!r}; minivdm's EDM Euler sampler implements SVD's "
                             f"{key}={value!r} only")
    sigmas = []
    for key in ("sigma_min", "sigma_max"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"the scheduler has {key}={value!r}; minivdm's EDM Euler sampler needs it given, a number "
                             f"> 0 (SVD's: sigma_min=0.002, sigma_max=700.0)")
        sigmas.append(float(value))
    if sigmas[0] >= sigmas[1]:
        raise ValueError(f"the scheduler has sigma_min={sigmas[0]} >= sigma_max={sigmas[1]}")
    return sigmas[0], sigmas[1]


def check_folder(folder: Path, config_name: str, *, check_config: bool) -> tuple[int, tuple[float, float]]:
    """Before any weight is read: the U-Net is ``config_name``'s architecture (with ``check_config``), the VAE is the
    temporal decoder, the image encoder's embedding is the U-Net's cross-attention width, the feature extractor
    normalizes with CLIP's statistics, the scheduler is SVD's. Returns the multiple the image's size must be, and
    (sigma_min, sigma_max)."""
    from minivdm.models.svd_unet import SVDUNetConfig

    unet = SVDUNetConfig.from_diffusers(read_json(folder / "unet" / "config.json"), name=str(folder))
    if check_config:
        check_architecture(unet, svd_unet_config(config_name), config_name)
    vae = read_json(folder / "vae" / "config.json")
    if vae.get("_class_name") != "AutoencoderKLTemporalDecoder":
        raise ValueError(f"the VAE is a {vae.get('_class_name')}; SVD decodes with diffusers' "
                         f"AutoencoderKLTemporalDecoder (vae/config.json)")
    encoder = read_json(folder / "image_encoder" / "config.json")
    if encoder.get("projection_dim") != unet.cross_attention_dim:
        raise ValueError(f"the image encoder's embedding has projection_dim={encoder.get('projection_dim')}; the "
                         f"U-Net attends to embeddings of cross_attention_dim={unet.cross_attention_dim}")
    extractor = read_json(folder / "feature_extractor" / "preprocessor_config.json")
    for key, expected in (("image_mean", CLIP_MEAN), ("image_std", CLIP_STD)):
        value = extractor.get(key)
        if not isinstance(value, list) or len(value) != 3 or max(abs(a - b) for a, b in zip(value, expected)) > 1e-6:
            raise ValueError(f"the feature extractor has {key}={value!r}; minivdm's SVD pipeline normalizes with "
                             f"OpenAI CLIP's {list(expected)}")
    sigmas = read_svd_scheduler(read_json(folder / "scheduler" / "scheduler_config.json"))
    multiple = 2 ** (len(vae.get("block_out_channels", (128, 256, 512, 512))) - 1) * 2 ** (
        len(unet.block_out_channels) - 1)
    return multiple, sigmas


def read_rgb_pixels(path: str | Path) -> torch.Tensor:
    """The image file's pixels (H, W, 3), uint8 RGB; a missing or unreadable file refused by name."""
    import PIL.Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--image {path}: no file there; give an image (PNG, JPEG)")
    try:
        with PIL.Image.open(path) as opened:
            return torch.from_numpy(np.array(opened.convert("RGB")))
    except (OSError, ValueError) as error:
        raise ValueError(f"--image {path} is not an image minivdm can read ({error})") from None


def read_image(path: str | Path, multiple: int) -> torch.Tensor:
    """The image file as (1, 3, H, W) in [-1, 1] (RGB); H and W must be multiples of ``multiple``."""
    pixels = read_rgb_pixels(path)
    height, width = pixels.shape[:2]
    if height % multiple or width % multiple:
        raise ValueError(f"--image {path} is {width}x{height}; its width and height must be multiples of {multiple} "
                         f"(the VAE's factor times the U-Net's): resize it, e.g. to {SVD_SIZE[0]}x{SVD_SIZE[1]}, "
                         f"SVD's training size")
    return (pixels.permute(2, 0, 1).float() / 127.5 - 1).unsqueeze(0)


def check_options(*, frames: int | None, steps: int, min_guidance: float, max_guidance: float, fps: int,
                  motion_bucket_id: int, noise_aug_strength: float, decode_chunk_size: int | None) -> None:
    """The command's numbers, refused by option name before any file is read."""
    for name, value in (("--frames", frames), ("--decode-chunk-size", decode_chunk_size), ("--steps", steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise ValueError(f"--fps must be a whole number of frames per second >= 1 (SVD is conditioned on fps - 1; "
                         f"the file plays at it), got {fps!r}")
    if isinstance(motion_bucket_id, bool) or not isinstance(motion_bucket_id, int) or not (
            0 <= motion_bucket_id < MOTION_BUCKETS):
        raise ValueError(f"--motion-bucket must be a whole number in 0..{MOTION_BUCKETS - 1} (0: still, "
                         f"{MOTION_BUCKETS - 1}: most motion; default 127), got {motion_bucket_id!r}")
    if not math.isfinite(noise_aug_strength) or noise_aug_strength < 0:
        raise ValueError(f"--noise-aug must be a number >= 0 (the std of the noise added to the image; default "
                         f"0.02), got {noise_aug_strength}")
    if not (math.isfinite(min_guidance) and math.isfinite(max_guidance)) or min_guidance > max_guidance:
        raise ValueError(f"--min-guidance (the first frame's) must be <= --guidance (the last frame's), both finite, "
                         f"got {min_guidance} and {max_guidance}")


def generate_svd_video(config_name: str, weights: str | None, image_path: str | Path, out: str | Path, *,
                       frames: int | None = None, steps: int = SVD_NUM_STEPS, min_guidance: float = 1.0,
                       max_guidance: float = 3.0, fps: int = 7, motion_bucket_id: int = 127,
                       noise_aug_strength: float = 0.02, decode_chunk_size: int | None = None, seed: int = 0,
                       device: str | None = None, dtype: str | None = None, check_config: bool = True) -> Path:
    """An SVD video starting from the image at ``image_path``, written as .mp4 or .gif at ``fps`` (default: the
    U-Net's frames, 14 for svd and 25 for svd-xt, 25 steps, guidance 1 on the first frame to 3 on the last)."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionModelWithProjection

    from minivdm.io.video_files import write_video
    from minivdm.methods.image_to_video import generate_image_to_video
    from minivdm.models.svd_unet import load_svd_unet

    if config_name not in SVD_CONFIGS:
        raise ValueError(f"image-to-video with SVD runs {' and '.join(SVD_CONFIGS)}, got {config_name!r}")
    if Path(out).suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"{config_name} writes a video: --out must end in .mp4 or .gif, got {str(out)!r}")
    check_options(frames=frames, steps=steps, min_guidance=min_guidance, max_guidance=max_guidance, fps=fps,
                  motion_bucket_id=motion_bucket_id, noise_aug_strength=noise_aug_strength,
                  decode_chunk_size=decode_chunk_size)
    folder = local_pipeline_folder(weights, config_name, HF_IDS, f"SVD pipeline folder ({SVD_LAYOUT})")
    multiple, (sigma_min, sigma_max) = check_folder(folder, config_name, check_config=check_config)
    image = read_image(image_path, multiple)
    device, torch_dtype = _device_and_dtype(device, dtype or "fp16")

    unet = load_svd_unet(folder / "unet", dtype=torch_dtype, device=device).eval()
    vae = AutoencoderKLTemporalDecoder.from_pretrained(folder / "vae", torch_dtype=torch_dtype).to(device).eval()
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder", torch_dtype=torch_dtype)
    image_encoder = image_encoder.to(device).eval()
    video = generate_image_to_video(unet, vae, image_encoder, image.to(device), num_frames=frames, num_steps=steps,
                                    min_guidance_scale=min_guidance, max_guidance_scale=max_guidance, fps=fps,
                                    motion_bucket_id=motion_bucket_id, noise_aug_strength=noise_aug_strength,
                                    decode_chunk_size=decode_chunk_size, sigma_min=sigma_min, sigma_max=sigma_max,
                                    generator=torch.Generator().manual_seed(seed))
    return write_video(out, video[0].cpu(), fps=fps)
