r"""`minivdm generate --config cogvideox-2b` (or cogvideox-5b): CogVideoX text-to-video at full scale, with our
VideoDiT and samplers (``minivdm.methods.text_to_video_dit``). Opt-in, a GPU recommended (the 2B in fp16 and the 5B in
bf16, as their model cards load them); nothing here downloads (``minivdm.full_scale``).

``--weights`` is a local CogVideoX pipeline folder (transformer/, vae/, text_encoder/, tokenizer/, scheduler/, as
``huggingface-cli download THUDM/CogVideoX-2b --local-dir FOLDER`` writes it), or a Hugging Face id already in the
local cache (default: the config's own, ``minivdm.configs.dit.HF_IDS``). The sampler is the one the folder's scheduler
config names: DDIM for the 2B, DPM-Solver++(2M) SDE for the 5B. Everything a user can get wrong (the frame count, the
size, the architecture of the weights) is refused before a weight is read. The same path runs on the CPU in the tests
with a tiny pipeline folder in the published layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from minivdm.configs.dit import DIT_CONFIGS, HF_IDS, full_scale_dit_config
from minivdm.full_scale import _device_and_dtype, check_architecture, local_pipeline_folder

COGVIDEOX_CONFIGS = ("cogvideox-2b", "cogvideox-5b")
DEFAULT_DTYPES = {"cogvideox-2b": "fp16", "cogvideox-5b": "bf16"}
DEFAULT_FRAMES = 49  # 6 seconds at 8 frames per second, plus the first frame
FPS = 8


def check_frames(num_frames: int, temporal_compression: int = 4) -> int:
    """CogVideoX's 3D VAE keeps the first frame and packs every next 4 into one latent frame: 4k + 1 frames."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"--frames must be a whole number 4k + 1 (e.g. 49), got {num_frames!r}")
    if (num_frames - 1) % temporal_compression:
        low = (num_frames - 1) // temporal_compression * temporal_compression + 1
        raise ValueError(f"--frames must be {temporal_compression}k + 1 (the 3D VAE keeps the first frame and packs "
                         f"every next {temporal_compression} into one latent frame): {low} or "
                         f"{low + temporal_compression}, not {num_frames}")
    return num_frames


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent.parent} is not a CogVideoX pipeline folder: it has no "
                                f"{path.parent.name}/{path.name}")
    return json.loads(path.read_text())


def check_folder(folder: Path, config_name: str, *, height: int | None, width: int | None,
                 check_config: bool) -> None:
    """Before any weight is read: the transformer is ``config_name``'s architecture (with ``check_config``), and
    height and width are multiples of the VAE's factor times the patch size (16 for CogVideoX)."""
    from minivdm.models.dit_checkpoints import dit_config_from_diffusers

    transformer = dit_config_from_diffusers(read_json(folder / "transformer" / "config.json"), name=str(folder))
    if check_config:
        check_architecture(transformer, full_scale_dit_config(config_name), config_name)
    vae = read_json(folder / "vae" / "config.json")
    multiple = 2 ** (len(vae.get("block_out_channels", (128, 256, 256, 512))) - 1) * transformer.patch_size
    for name, value in (("--height", height), ("--width", width)):
        if value is not None and (value <= 0 or value % multiple):
            raise ValueError(f"{name} must be a positive multiple of {multiple} (the VAE's factor times the "
                             f"transformer's patch size), got {value}")


def generate_dit_video(config_name: str, prompt: str, out: str | Path, *, weights: str | None = None, steps: int = 50,
                       guidance_scale: float = 6.0, use_dynamic_cfg: bool = False, num_frames: int = DEFAULT_FRAMES,
                       seed: int = 0, device: str | None = None, dtype: str | None = None, height: int | None = None,
                       width: int | None = None, fps: int = FPS, check_config: bool = True) -> Path:
    """A CogVideoX video for ``prompt``, written as .mp4 or .gif (default 49 frames at 480x720, 50 steps, w = 6)."""
    from minivdm.io.video_files import write_video
    from minivdm.methods.text_to_video_dit import load_cogvideox_components, text_to_video_dit

    if config_name not in COGVIDEOX_CONFIGS:
        other = (f"; {config_name}'s transformer loads (minivdm.models.dit_checkpoints.load_dit) but minivdm has no "
                 f"sampling pipeline for it" if config_name in DIT_CONFIGS else "")
        raise ValueError(f"text-to-video with a DiT runs {' and '.join(COGVIDEOX_CONFIGS)}, got {config_name!r}{other}")
    if Path(out).suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(f"{config_name} writes a video: --out must end in .mp4 or .gif, got {str(out)!r}")
    check_frames(num_frames)
    folder = local_pipeline_folder(weights, config_name, HF_IDS, "CogVideoX pipeline folder (transformer/, vae/, "
                                                                 "text_encoder/, tokenizer/, scheduler/)")
    check_folder(folder, config_name, height=height, width=width, check_config=check_config)
    device, torch_dtype = _device_and_dtype(device, dtype or DEFAULT_DTYPES[config_name])
    transformer, vae, text_encoder, tokenizer, settings, solver = load_cogvideox_components(
        folder, dtype=torch_dtype, device=device)
    video = text_to_video_dit(transformer, vae, text_encoder, tokenizer, settings, [prompt], solver=solver,
                              num_frames=num_frames, num_steps=steps, guidance_scale=guidance_scale,
                              use_dynamic_cfg=use_dynamic_cfg, height=height, width=width,
                              generator=torch.Generator().manual_seed(seed))
    return write_video(out, video[0].cpu(), fps=fps)
