"""Running the published checkpoints (opt-in, GPU recommended): `python -m minivdm generate ...`.

Nothing here downloads. ``--weights`` is either a local diffusers pipeline folder or a Hugging Face
repository id that is already in the local cache (``huggingface-cli download <id>`` on a machine with
internet, or a copied cache); see README.md, "Full scale". So are ``--controlnet-weights`` (ControlVideo's
ControlNet) and ``--depth-model`` (a local folder only). The same code path runs on CPU in the tests with tiny
checkpoints in the same folder layout.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from minivdm.configs.modelscope import HF_IDS as VIDEO_HF_IDS
from minivdm.configs.modelscope import MODELSCOPE_T2V
from minivdm.configs.stable_diffusion import CONFIGS as IMAGE_CONFIGS
from minivdm.configs.stable_diffusion import HF_IDS as IMAGE_HF_IDS

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
VIDEO_CONFIGS = {MODELSCOPE_T2V.name: MODELSCOPE_T2V}
CONTROLS = ("canny", "depth")
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")  # a Hugging Face id: name or owner/name
# The image configs ControlVideo runs on, and whose published ControlNets they take: SD 1.4 has SD 1.5's
# architecture (the same U-Net encoder), so SD 1.5's ControlNets fit it.
CONTROLNET_BASE = {"sd15": "sd15", "sd14": "sd15"}


def resolve_weights(weights: str | None, config_name: str, hf_ids: dict[str, str], option: str = "--weights") -> Path:
    """A local folder, or the cached snapshot of a Hugging Face id (the config's own id by default).
    ``option``: the command-line option that gives ``weights``, named in the errors."""
    if weights is not None and Path(weights).is_dir():
        return Path(weights)
    repo_id = weights or hf_ids.get(config_name)
    if repo_id is None:
        raise FileNotFoundError(f"{option} {weights!r} is not a folder, and config {config_name!r} has no Hugging Face id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{repo_id} is not in the local Hugging Face cache and minivdm never downloads. On a machine with internet "
            f"run `huggingface-cli download {repo_id}` (or pass {option} /path/to/a/local/copy)."
        ) from None


def local_pipeline_folder(weights: str | None, config_name: str, hf_ids: dict[str, str], layout: str) -> Path:
    """The local folder of ``weights`` (a folder, or a cached Hugging Face id; default: the config's id). A path that
    is neither is refused, naming the ``layout`` the folder should have and how to get one."""
    if weights is not None and not Path(weights).is_dir() and not HUB_ID.match(weights):
        raise FileNotFoundError(f"--weights {weights}: no folder there (and it is not a Hugging Face id, owner/name); "
                                f"give a local {layout}, e.g. from `huggingface-cli download {hf_ids[config_name]} "
                                f"--local-dir FOLDER` on a machine with internet")
    return resolve_weights(weights, config_name, hf_ids)


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


ANIMATEDIFF = "animatediff"
ANIMATEDIFF_BASE = "sd15"  # the published motion adapters are trained on SD 1.5's U-Net
ANIMATEDIFF_ADAPTER_ID = "guoyww/animatediff-motion-adapter-v1-5-2"


def generate_animatediff(prompt: str, out: str | Path, *, motion_adapter: str | None, weights: str | None = None,
                         steps: int = 25, guidance_scale: float = 7.5, num_frames: int = 16, seed: int = 0,
                         device: str | None = None, dtype: str = "fp16", height: int | None = None,
                         width: int | None = None, fps: int = 8, check_config: bool = True) -> Path:
    """AnimateDiff: Stable Diffusion 1.5 (``weights``) with a motion adapter, our U-Net and DDIM; .mp4 or .gif."""
    from minivdm.io.video_files import write_video
    from minivdm.methods.text_to_video import load_animatediff_components, text_to_video
    from minivdm.models.animatediff_unet import MotionAdapterConfig

    device, torch_dtype = _device_and_dtype(device, dtype)
    folder = resolve_weights(weights, ANIMATEDIFF_BASE, IMAGE_HF_IDS)
    adapter = resolve_weights(motion_adapter, ANIMATEDIFF, {ANIMATEDIFF: ANIMATEDIFF_ADAPTER_ID}, "--motion-adapter")
    unet, vae, text_encoder, tokenizer, settings = load_animatediff_components(folder, adapter, dtype=torch_dtype,
                                                                               device=device)
    if check_config:
        check_architecture(unet.config, IMAGE_CONFIGS[ANIMATEDIFF_BASE], ANIMATEDIFF_BASE)
        check_architecture(unet.adapter_config, MotionAdapterConfig(), "animatediff motion adapter (SD 1.5, v2)")
    video = text_to_video(unet, vae, text_encoder, tokenizer, settings, [prompt], num_frames=num_frames,
                          num_steps=steps, guidance_scale=guidance_scale, height=height, width=width,
                          generator=torch.Generator().manual_seed(seed))
    return write_video(out, video[0].cpu(), fps=fps)


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


def _uint8_frames(video: torch.Tensor, name: str = "video") -> np.ndarray:
    """A video (C, N, H, W), C = 3 or 1, float in [-1, 1] (as ``read_video`` returns it) or uint8 in [0, 255]
    -> uint8 frames (N, H, W, C)."""
    from minivdm.io.video_files import video_to_frames

    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[0] not in (1, 3):
        shape = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"{name} must be a tensor (C, N, H, W) with C = 3 (RGB) or 1 (grey), as read_video returns "
                         f"it, got {shape}")
    if video.dtype == torch.uint8:
        return rearrange(video, "c n h w -> n h w c").cpu().numpy()
    if not video.is_floating_point():
        raise TypeError(f"{name} must be float in [-1, 1] or uint8 in [0, 255], got dtype {video.dtype}")
    return video_to_frames(video)


def canny_controls(video: torch.Tensor, low: int = 100, high: int = 200) -> torch.Tensor:
    """The control images of SD 1.5's canny ControlNet: per frame, OpenCV's Canny edges (thresholds ``low``,
    ``high``: diffusers' example's) of the grey uint8 frame, 1 on an edge and 0 elsewhere, repeated to the 3
    channels the ControlNet reads. ``video`` (C, N, H, W), float in [-1, 1] or uint8 -> (1, 3, N, H, W) in [0, 1]."""
    import cv2

    if not 0 <= low <= high:
        raise ValueError(f"Canny thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")
    frames = _uint8_frames(video)
    edges = []
    for frame in frames:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.shape[-1] == 3 else frame[..., 0]
        edges.append(torch.from_numpy(cv2.Canny(np.ascontiguousarray(grey), low, high)))
    return repeat(torch.stack(edges).float() / 255, "n h w -> 1 c n h w", c=3)


def _depth_model_folder(depth_model: str | Path | None) -> Path:
    hint = ("a local transformers depth-estimation model folder, e.g. a copy of Intel/dpt-hybrid-midas (MiDaS, "
            "whose maps SD 1.5's depth ControlNet was trained on): `huggingface-cli download Intel/dpt-hybrid-midas "
            "--local-dir FOLDER` on a machine with internet, then --depth-model FOLDER")
    if depth_model is None:
        raise ValueError(f"depth controls need {hint}")
    if not Path(depth_model).is_dir():
        raise FileNotFoundError(f"--depth-model {depth_model}: no folder there, and minivdm never downloads; "
                                f"give {hint}")
    return Path(depth_model)


def depth_controls(video: torch.Tensor, depth_model: str | Path, *, device: str | torch.device = "cpu",
                   frames_per_batch: int = 8) -> torch.Tensor:
    """The control images of SD 1.5's depth ControlNet: a transformers depth-estimation model (a local folder,
    never downloaded) per frame, its relative inverse depth (near is bright) resized to the frame size and
    normalised to [0, 1] once over the whole video, repeated to 3 channels.
    ``video`` (C, N, H, W), float in [-1, 1] or uint8 -> (1, 3, N, H, W) in [0, 1]."""
    folder = _depth_model_folder(depth_model)
    frames = _uint8_frames(video)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:  # transformers' ways of saying it is not such a folder
        raise ValueError(f"--depth-model {folder}: not a transformers depth-estimation model folder (config.json, "
                         f"weights and preprocessor_config.json, e.g. Intel/dpt-hybrid-midas): {error}") from None
    model = model.to(device=device, dtype=torch.float32).eval()
    height, width = frames.shape[1:3]
    depths = []
    with torch.no_grad():
        for start in range(0, len(frames), frames_per_batch):
            inputs = processor(images=list(frames[start:start + frames_per_batch]), return_tensors="pt")
            predicted = model(pixel_values=inputs["pixel_values"].to(device=device, dtype=torch.float32)).predicted_depth
            depths.append(F.interpolate(predicted[:, None].float(), size=(height, width), mode="bicubic",
                                        align_corners=False)[:, 0].cpu())
    depth = torch.cat(depths)
    # One min/max for the whole video, not per frame: per-frame normalisation rescales each frame by its own
    # nearest and farthest points, so an object coming closer, or entering the frame, would dim or brighten
    # everything else, and the ControlNet would read that flicker as the whole scene's depth changing.
    low, high = depth.min(), depth.max()
    depth = ((depth - low) / (high - low).clamp_min(1e-8)).clamp(0, 1)
    return repeat(depth, "n h w -> 1 c n h w", c=3)


def default_smoother_steps(steps: int) -> tuple[int, ...]:
    """ControlVideo's interleaved-frame smoother at two consecutive steps at t of about 0.6 (indices 20 and 21 of
    50): the two steps smooth the even and the odd frames, so every three-frame clip is smoothed once, while the
    layout is still forming; the later steps restore the detail the interpolation blurs. Kept inside short runs."""
    first = max(0, min(round(0.4 * steps), steps - 2))
    return tuple(index for index in (first, first + 1) if index < steps)


def read_control_frames(path: str | Path, num_frames: int, *, option: str = "--control-video",
                        role: str = "whose frames give the controls") -> torch.Tensor:
    """The first ``num_frames`` frames (3, N, H, W) in [-1, 1] of the video at ``path`` (given as ``option``)."""
    from minivdm.io.video_files import read_video

    try:
        video = read_video(path)
    except (OSError, ValueError) as error:  # a missing, misnamed or broken file: the message says which
        raise type(error)(f"{option}: {error} (expected an .mp4 or .gif {role})") from None
    if video.shape[1] < num_frames:
        raise ValueError(f"{option} {path} has {video.shape[1]} frames, fewer than the {num_frames} asked for "
                         f"(--frames); give a longer video or --frames {video.shape[1]} or fewer")
    return video[:, :num_frames]


def load_checked_controlnet(weights: str | None, config_name: str, control: str, *, device: str | None, dtype: str,
                            check_config: bool):
    """Our ControlNet from ``weights``: a ControlNet folder (config.json and weights at the top, as the published
    ones ship), a pipeline folder with controlnet/, or a cached Hugging Face id (default: the published
    ControlNet of ``config_name`` for ``control``). With ``check_config``, its config.json is checked against
    that ControlNet's architecture before any weight is read."""
    from minivdm.configs.controlnet import CONFIGS as CONTROLNET_CONFIGS
    from minivdm.configs.controlnet import HF_IDS as CONTROLNET_HF_IDS
    from minivdm.models.controlnet import ControlNetConfig, ControlNetModel

    name = f"controlnet-{CONTROLNET_BASE[config_name]}-{control}"
    folder = resolve_weights(weights, name, CONTROLNET_HF_IDS, option="--controlnet-weights")
    component = folder / "controlnet" if (folder / "controlnet" / "config.json").is_file() else folder
    if not (component / "config.json").is_file():
        raise FileNotFoundError(
            f"--controlnet-weights {folder}: expected a ControlNet folder (config.json and weights at the top, as "
            f"{CONTROLNET_HF_IDS.get(name, 'a published ControlNet')} ships) or a pipeline folder with controlnet/, "
            f"found {sorted(p.name for p in folder.iterdir())}")
    if check_config:
        try:
            loaded = ControlNetConfig.from_diffusers(json.loads((component / "config.json").read_text()),
                                                     name=str(component))
            check_architecture(loaded, CONTROLNET_CONFIGS[name], name)
        except ValueError as error:
            raise ValueError(f"--controlnet-weights {folder}: {error}; expected the {control} ControlNet of "
                             f"{config_name}'s U-Net (--no-config-check accepts it)") from None
    device, torch_dtype = _device_and_dtype(device, dtype)
    return ControlNetModel.from_pretrained(component, subfolder=None, dtype=torch_dtype, device=device)


def generate_controlled_video(config_name: str, prompt: str, out: str | Path, *, control_video: str | Path,
                              control: str = "canny", controlnet_weights: str | None = None,
                              depth_model: str | Path | None = None, attention: str = "all",
                              smoother_steps: tuple[int, ...] | None = None, clip_length: int | None = None,
                              conditioning_scale: float = 1.0, weights: str | None = None, steps: int = 50,
                              guidance_scale: float = 7.5, num_frames: int = 8, seed: int = 0,
                              device: str | None = None, dtype: str = "fp16", height: int | None = None,
                              width: int | None = None, fps: int = 4, check_config: bool = True) -> Path:
    """ControlVideo with an image checkpoint (sd15, sd14) and its published canny or depth ControlNet: the first
    ``num_frames`` frames of ``control_video``, resized to height x width (default: the U-Net's size), give one
    control image per frame (Canny edges, or the depth of ``depth_model``, a local transformers folder); our U-Net
    and ControlNet sample the video with ``attention`` ("all": fully cross-frame), the interleaved-frame smoother
    at ``smoother_steps`` (default ``default_smoother_steps``; () turns it off) and, with ``clip_length``, the
    hierarchical sampler. The clip is written as .mp4 or .gif."""
    from minivdm.io.video_files import write_video
    from minivdm.methods.controlvideo import ATTENTION, controlvideo_latents
    from minivdm.methods.text_to_image import latent_size, load_components
    from minivdm.methods.text_to_video import decode_frames

    # everything a user can get wrong is refused before the checkpoints load
    if config_name not in CONTROLNET_BASE:
        raise ValueError(f"controlvideo adds a ControlNet to an image model: --config must be one of "
                         f"{sorted(CONTROLNET_BASE)}, got {config_name!r}")
    if control not in CONTROLS:
        raise ValueError(f"control (--controlnet) must be one of {CONTROLS}, got {control!r}")
    if control == "depth":
        _depth_model_folder(depth_model)
    elif depth_model is not None:
        raise ValueError(f"a depth model belongs to control 'depth' (Canny edges need none), got control {control!r} "
                         f"and depth model {str(depth_model)!r}")
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
    if not conditioning_scale >= 0:
        raise ValueError(f"conditioning_scale (--conditioning-scale) must be >= 0, got {conditioning_scale}")
    if Path(out).suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"controlvideo writes a video: --out must end in .mp4 or .gif, got {str(out)!r}")
    smoother_steps = default_smoother_steps(steps) if smoother_steps is None else tuple(smoother_steps)
    if any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < steps for s in smoother_steps):
        raise ValueError(f"smoother steps must be step indices in [0, {steps - 1}] (the sampler has {steps} steps), "
                         f"got {smoother_steps!r}")
    if clip_length is not None and (isinstance(clip_length, bool) or not isinstance(clip_length, int)
                                    or clip_length < 2):
        # with 1 every frame is a key frame: the key frames never fit one clip and the hierarchy never ends
        raise ValueError(f"clip_length (--clip-length) must be a whole number >= 2 (frames from one key frame to the "
                         f"next) or None (all frames at once), got {clip_length!r}")
    frames = read_control_frames(control_video, num_frames)
    controlnet = load_checked_controlnet(controlnet_weights, config_name, control, device=device, dtype=dtype,
                                         check_config=check_config)
    unet, vae, text_encoder, tokenizer, settings = load_checked_components(
        config_name, IMAGE_CONFIGS, IMAGE_HF_IDS, load_components, weights=weights, device=device, dtype=dtype,
        check_config=check_config)
    parameter = unet.conv_in.weight
    controlnet = controlnet.to(device=parameter.device, dtype=parameter.dtype)
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    h, w = latent_size(unet, vae, height, width)  # refuses a size that is not a multiple of the VAE's factor
    size = (h * vae_scale, w * vae_scale)
    if tuple(frames.shape[-2:]) != size:  # the controls are made at the output size, as the ControlNet reads them
        frames = rearrange(F.interpolate(rearrange(frames, "c n h w -> n c h w"), size=size, mode="bilinear",
                                         align_corners=False, antialias=True).clamp(-1, 1), "n c h w -> c n h w")
    controls = canny_controls(frames) if control == "canny" else depth_controls(frames, depth_model,
                                                                                device=parameter.device)
    latents = controlvideo_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, prompt, controls,
                                   attention=attention, smoother_steps=smoother_steps, clip_length=clip_length,
                                   conditioning_scale=conditioning_scale, num_steps=steps,
                                   guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed),
                                   progress=True)
    with torch.no_grad():
        video = decode_frames(vae, latents)
    return write_video(out, video[0].clamp(-1, 1).cpu(), fps=fps)
