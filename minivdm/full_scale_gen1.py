r"""`minivdm generate --config sd2-depth --method gen1`: Gen-1 (Esser et al., 2023, arXiv:2302.03011) at full
scale on Stable Diffusion 2 depth, the published image model closest to Gen-1's (a latent U-Net that reads 4
latent channels + 1 depth channel and cross-attends to 1024-wide tokens). Opt-in, a GPU recommended; nothing
here downloads (``minivdm.full_scale``).

    1. structure s: the first --frames frames of --control-video, the relative inverse depth of each from a
       local transformers depth model (--depth-model), then ``depth_to_structure`` at the latent size and
       structure level t_s (--structure-level);
    2. content c: the CLIP image embedding of --content-image from a local CLIPVisionModelWithProjection
       (--image-encoder; its projection width must be the U-Net's cross_attention_dim, 1024 for SD 2: OpenCLIP
       ViT-H/14's), as one token (``content_tokens``);
    3. the U-Net: SD 2 depth's spatial layers (--weights) inflated into a ``Gen1UNet`` (temporal layers the
       identity), or with trained Gen-1 weights (--gen1-weights); sampled from noise with DDIM on the
       pipeline's scheduler grid, classifier-free guidance on the content (``minivdm.methods.gen1.edit_video``),
       decoded by the pipeline's VAE and written as .mp4 or .gif.

Gen-1's own weights are not public: without --gen1-weights the video shows the mechanism (depth fixes the
layout, one image token steers the look), not a trained edit. Gen-1's text path (a prior from text to image
embeddings) is not public either, so this command takes no --prompt. The same path runs on the CPU in the
tests with tiny checkpoints in the published layouts.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from minivdm.configs.stable_diffusion import HF_IDS as IMAGE_HF_IDS
from minivdm.configs.stable_diffusion import SD2_DEPTH
from minivdm.full_scale import (_depth_model_folder, _device_and_dtype, check_architecture, depth_controls,
                                read_control_frames, resolve_weights)
from minivdm.models.unet_2d_condition import UNet2DConditionConfig

GEN1_CONFIGS = (SD2_DEPTH.name,)
IMAGE_ENCODER_HINT = ("a local transformers CLIP image encoder folder (CLIPVisionModelWithProjection, or a whole "
                      "CLIPModel, with its preprocessor_config.json) whose projection width is the U-Net's "
                      "cross_attention_dim: for sd2-depth OpenCLIP ViT-H/14 (1024), e.g. a copy of "
                      "laion/CLIP-ViT-H-14-laion2B-s32B-b79K or h94/IP-Adapter's models/image_encoder")
UNTRAINED_WARNING = (
    "minivdm generate: warning: Gen-1's trained weights are not public and no --gen1-weights was given: the "
    "temporal layers are the identity (every frame is SD 2 depth's own sample) and SD 2 depth's cross-attention "
    "was trained on text tokens, never on CLIP image embeddings. The video shows Gen-1's mechanism (the source's "
    "depth fixes the layout, one image token steers the look), not a trained edit.")


def image_encoder_config(image_encoder: str | Path | None):
    """The CLIPVisionConfig the image encoder is built with, read before any weight: a CLIPVisionModelWithProjection
    folder as saved, or a whole CLIPModel folder, whose vision half takes the model's projection width (its
    vision_config keeps transformers' default, which would not fit the checkpoint's visual_projection)."""
    from transformers import CLIPVisionConfig

    if image_encoder is None:
        raise ValueError(f"--method gen1 needs --image-encoder: {IMAGE_ENCODER_HINT}")
    folder = Path(image_encoder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--image-encoder {image_encoder}: no folder there, and minivdm never downloads; "
                                f"give {IMAGE_ENCODER_HINT}")
    missing = [name for name in ("config.json", "preprocessor_config.json") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"--image-encoder {folder}: no {' or '.join(missing)} there; expected "
                                f"{IMAGE_ENCODER_HINT}")
    try:
        saved = json.loads((folder / "config.json").read_text())
        if saved.get("model_type") not in ("clip", "clip_vision_model"):
            raise ValueError(f"its model_type is {saved.get('model_type')!r}, not 'clip_vision_model' or 'clip'")
        if "vision_config" in saved:  # a whole CLIPModel
            return CLIPVisionConfig(**{**saved["vision_config"], "projection_dim": saved.get("projection_dim", 512)})
        return CLIPVisionConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--image-encoder {folder}: not a CLIP image encoder ({error}); expected "
                         f"{IMAGE_ENCODER_HINT}") from None


def read_content_image(path: str | Path | None) -> torch.Tensor:
    """The content image (H, W, 3), uint8 RGB: grey is repeated, an alpha channel dropped."""
    import imageio.v3 as iio

    if path is None:
        raise ValueError("--method gen1 needs --content-image: an image (PNG or JPEG) whose look the video takes")
    if not Path(path).is_file():
        raise FileNotFoundError(f"--content-image {path}: no image file there (expected a PNG or JPEG whose look "
                                f"the video takes)")
    try:
        image = torch.as_tensor(iio.imread(path))
    except Exception as error:  # imageio raises many kinds; one message names the file and what it needs
        raise ValueError(f"--content-image {path}: not a readable image ({error}); give a PNG or JPEG") from None
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"--content-image {path}: expected one image (H, W) or (H, W, 1 | 3 | 4), got "
                         f"{tuple(image.shape)}")
    if image.dtype != torch.uint8:
        raise ValueError(f"--content-image {path}: expected 8-bit colours, got {image.dtype}")
    return image[..., :3] if image.shape[-1] != 1 else image.expand(-1, -1, 3)


@torch.no_grad()
def image_embedding(image: torch.Tensor, image_encoder: str | Path, *,
                    device: str | torch.device = "cpu") -> torch.Tensor:
    """CLIP's projected image embedding (1, D) of one uint8 image (H, W, 3), with the encoder's own preprocessing
    (resize, centre crop, CLIP's normalisation)."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    config = image_encoder_config(image_encoder)
    try:
        processor = CLIPImageProcessor.from_pretrained(image_encoder, local_files_only=True)
        model = CLIPVisionModelWithProjection.from_pretrained(image_encoder, config=config, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # transformers' ways of saying it does not fit
        raise ValueError(f"--image-encoder {image_encoder}: could not load it ({error}); expected "
                         f"{IMAGE_ENCODER_HINT}") from None
    model = model.to(device=device, dtype=torch.float32).eval()
    pixels = processor(images=[image.numpy()], return_tensors="pt")["pixel_values"]
    return model(pixel_values=pixels.to(device=device, dtype=torch.float32)).image_embeds.float()


def video_depth(frames: torch.Tensor, depth_model: str | Path, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """(1, 1, T, H, W): the depth model's relative inverse depth of every frame of ``frames`` (3, T, H, W).
    ``depth_controls`` runs the model; its maps are an increasing affine function of the raw depth (one
    min / max over the video), and ``depth_to_structure`` rescales each clip by its own min and max, so the
    structure is the same as from the raw maps."""
    return depth_controls(frames, depth_model, device=device)[:, :1]


def _read_json(folder: Path, part: str) -> dict:
    path = folder / part / "config.json"
    if not path.is_file():
        found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "nothing"
        raise FileNotFoundError(f"{folder} is not a diffusers pipeline folder: it has no {part}/config.json "
                                f"(found: {found})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None


def pipeline_configs(folder: Path, config_name: str, check_config: bool) -> tuple[UNet2DConditionConfig, dict]:
    """(U-Net config, VAE config) of a pipeline folder, read from their config.json before any weight; with
    ``check_config`` the U-Net must be SD 2 depth's architecture."""
    unet_config = UNet2DConditionConfig.from_diffusers(_read_json(folder, "unet"),
                                                       name=str(folder / "unet"))
    vae_config = _read_json(folder, "vae")
    if check_config:
        try:
            check_architecture(unet_config, SD2_DEPTH, config_name)
        except ValueError as error:
            raise ValueError(f"--weights {folder}: {error} (--no-config-check accepts it)") from None
    structure_channels = unet_config.in_channels - unet_config.out_channels
    if structure_channels != 1:
        raise ValueError(f"--weights {folder}: Gen-1 concatenates one depth map to the latents, so the U-Net must "
                         f"read out_channels + 1 = {unet_config.out_channels + 1} channels (SD 2 depth: 4 + 1), got "
                         f"in_channels {unet_config.in_channels}")
    return unet_config, vae_config


def check_structure_level(structure_level, latent_hw: tuple[int, int]) -> int:
    """t_s: a whole number from 0 (the exact depth) to log2 of the latents' shorter side (one pooled pixel)."""
    largest = int(math.log2(min(latent_hw)))
    if isinstance(structure_level, bool) or not isinstance(structure_level, int) or not 0 <= structure_level <= largest:
        raise ValueError(f"structure level (--structure-level) must be a whole number from 0 (the exact depth) to "
                         f"{largest} (each level halves the depth's resolution; the latents are {latent_hw[0]}x"
                         f"{latent_hw[1]}), got {structure_level!r}")
    return structure_level


def check_gen1_weights(path: str | Path, unet_config: UNet2DConditionConfig) -> bool:
    """Check a Gen-1 weights file by name and shape against a Gen1UNet of ``unet_config`` (built on the meta
    device, no weight loaded): it must hold every parameter, or exactly the temporal layers
    (``new_parameter_names()``). Returns whether it holds every parameter."""
    from safetensors import SafetensorError, safe_open

    from minivdm.models.gen1_unet import Gen1UNet

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--gen1-weights {path}: no such file (a .safetensors file of trained Gen-1 U-Net "
                                f"weights)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"--gen1-weights {path}: not a readable .safetensors file ({error})") from None
    with torch.device("meta"):
        model = Gen1UNet(unet_config)
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    temporal = set(model.new_parameter_names())
    whole = bool(set(shapes) & (set(expected) - temporal))  # any spatial weight: the file must hold them all
    wanted = set(expected) if whole else temporal
    missing, unexpected = sorted(wanted - set(shapes)), sorted(set(shapes) - set(expected))
    misshaped = [f"{name} {shapes[name]} (expected {expected[name]})" for name in sorted(shapes)
                 if name in expected and shapes[name] != expected[name]]
    if missing or unexpected or misshaped:
        problems = [f"{label} {len(names)}: {names[:3]}" for label, names in
                    (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)) if names]
        raise ValueError(f"--gen1-weights {path} does not fit the Gen-1 U-Net of these --weights: it must hold its "
                         f"{len(expected)} parameters, or exactly its {len(temporal)} temporal-layer ones "
                         f"(Gen1UNet.new_parameter_names()), by name and shape; {'; '.join(problems)}")
    return whole


def generate_gen1_video(config_name: str, out: str | Path, *, control_video: str | Path | None,
                        content_image: str | Path | None, depth_model: str | Path | None,
                        image_encoder: str | Path | None, gen1_weights: str | Path | None = None,
                        structure_level: int = 0, weights: str | None = None, steps: int = 50,
                        guidance_scale: float = 7.5, num_frames: int = 16, seed: int = 0, device: str | None = None,
                        dtype: str = "fp16", height: int | None = None, width: int | None = None, fps: int = 8,
                        check_config: bool = True) -> Path:
    """Gen-1 on SD 2 depth: the structure of ``control_video``'s first ``num_frames`` frames, the content of
    ``content_image``, written to ``out`` (.mp4 or .gif). Every input is checked before a checkpoint loads."""
    from minivdm.io.video_files import write_video
    from minivdm.methods.gen1 import content_tokens, depth_to_structure, edit_video
    from minivdm.methods.text_to_image import latent_size, load_components
    from minivdm.methods.text_to_video import decode_frames
    from minivdm.models.gen1_unet import Gen1UNet
    from minivdm.models.unet_2d_condition import UNet2DConditionModel

    if config_name not in GEN1_CONFIGS:
        raise ValueError(f"gen1 inflates SD 2 depth (4 latent + 1 depth channels, 1024-wide cross-attention): "
                         f"--config must be one of {list(GEN1_CONFIGS)}, got {config_name!r}")
    if Path(out).suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"gen1 writes a video: --out must end in .mp4 or .gif, got {str(out)!r}")
    if not math.isfinite(guidance_scale):
        raise ValueError(f"guidance scale (--guidance) must be a finite number, got {guidance_scale}")
    if isinstance(structure_level, bool) or not isinstance(structure_level, int) or structure_level < 0:
        raise ValueError(f"structure level (--structure-level) must be a whole number >= 0 (0: the exact depth), "
                         f"got {structure_level!r}")
    if control_video is None:
        raise ValueError("--method gen1 needs --control-video: the source video whose depth gives the structure")
    frames = read_control_frames(control_video, num_frames, role="whose depth gives the structure")
    image = read_content_image(content_image)
    _depth_model_folder(depth_model)
    encoder_width = image_encoder_config(image_encoder).projection_dim
    device, torch_dtype = _device_and_dtype(device, dtype)
    folder = resolve_weights(weights, config_name, IMAGE_HF_IDS)
    unet_config, vae_config = pipeline_configs(folder, config_name, check_config)
    if encoder_width != unet_config.cross_attention_dim:
        raise ValueError(f"--image-encoder {image_encoder}: its image embeddings are {encoder_width} wide, but the "
                         f"U-Net's cross-attention reads tokens of cross_attention_dim "
                         f"{unet_config.cross_attention_dim}; give {IMAGE_ENCODER_HINT}")
    h, w = latent_size(SimpleNamespace(config=unet_config),
                       SimpleNamespace(config=SimpleNamespace(block_out_channels=vae_config["block_out_channels"])),
                       height, width)
    unet_factor = 2 ** (len(unet_config.block_out_channels) - 1)
    if h % unet_factor or w % unet_factor:
        vae_scale = 2 ** (len(vae_config["block_out_channels"]) - 1)
        raise ValueError(f"height and width must be multiples of {vae_scale * unet_factor} (the VAE's factor "
                         f"{vae_scale} times the U-Net's {unet_factor}), got {h * vae_scale}x{w * vae_scale}")
    check_structure_level(structure_level, (h, w))
    whole = None if gen1_weights is None else check_gen1_weights(gen1_weights, unet_config)

    if gen1_weights is None:
        print(UNTRAINED_WARNING, file=sys.stderr, flush=True)
    torch.manual_seed(seed)  # the temporal attention's initial weights, drawn at inflation: the same on every run

    def load_gen1_unet(pipeline: Path, load_dtype: torch.dtype, load_device: str) -> Gen1UNet:
        image_unet = UNet2DConditionModel.from_pretrained(pipeline, "unet", dtype=load_dtype, device=load_device)
        return Gen1UNet.inflate(image_unet).eval()

    unet, vae, _, _, settings = load_components(folder, dtype=torch_dtype, device=device, load_unet=load_gen1_unet)
    if gen1_weights is not None:
        from minivdm.io.checkpoints import load_into, read_safetensors

        load_into(unet, read_safetensors(gen1_weights), strict=whole)
    parameter = unet.conv_in.weight

    depth = video_depth(frames, depth_model, device=parameter.device)
    structure = depth_to_structure(depth, (h, w), structure_level).to(device=parameter.device, dtype=parameter.dtype)
    embedding = image_embedding(image, image_encoder, device=parameter.device)
    content = content_tokens(embedding).to(device=parameter.device, dtype=parameter.dtype)
    if content.shape[-1] != unet.config.cross_attention_dim:  # the config said otherwise: a broken encoder folder
        raise ValueError(f"--image-encoder {image_encoder} gave embeddings {content.shape[-1]} wide, not the "
                         f"U-Net's cross_attention_dim {unet.config.cross_attention_dim}")

    schedule = settings.schedule

    def model(z_t, t, c, s):  # a published U-Net reads integer timesteps on its training grid
        return unet(z_t, schedule.timestep_from_t(t.double().cpu()).to(z_t.device), c, s)

    noise = torch.randn((1, unet.config.out_channels, num_frames, h, w), generator=torch.Generator().manual_seed(seed))
    z_start = noise.to(device=parameter.device, dtype=parameter.dtype)  # drawn on the CPU: the same on every device
    times, step_ends = settings.times_and_step_ends(steps)
    latents = edit_video(model, structure, content, schedule, times, z_start=z_start, guidance_scale=guidance_scale,
                         prediction_type=settings.prediction_type, step_ends=step_ends)
    with torch.no_grad():
        video = decode_frames(vae, latents)
    return write_video(out, video[0].clamp(-1, 1).cpu(), fps=fps)
