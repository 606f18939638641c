"""`minivdm tune-a-video`: Tune-A-Video at full scale on a published image checkpoint you have locally (opt-in,
a GPU recommended). Nothing here downloads: ``--weights`` is a local pipeline folder or a cached Hugging Face id,
as for `minivdm generate` (``minivdm.full_scale``).

    1. the first --frames frames of --video, resized to --height x --width, encoded by the pipeline's VAE;
    2. the image U-Net inflated (``inflate_for_tune_a_video``) and tuned --tune-steps steps on (video, --prompt)
       through ``minivdm.train`` (resumable: a rerun with the same --out continues), fp16 autocast and gradient
       checkpointing on a GPU; the tuned parameters are written to OUT/tuned_unet.safetensors;
       or ``--tuned FILE`` loads such a file instead of tuning, or ``--tuned-unet FOLDER`` a whole tuned U-Net in
       the official repository's layout (e.g. a published Tune-A-Video model's unet/);
    3. every --edit prompt: DDIM inversion of the source (empty prompt), then DDIM with guidance, decoded and
       written to OUT/edit_<k>.mp4 (or .gif).

The same path runs on the CPU in the tests with tiny checkpoints in the published layouts.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

from minivdm.configs.stable_diffusion import CONFIGS as IMAGE_CONFIGS
from minivdm.configs.stable_diffusion import HF_IDS as IMAGE_HF_IDS
from minivdm.full_scale import _device_and_dtype, check_architecture, read_control_frames, resolve_weights

BASE_CONFIGS = ("sd14", "sd15")  # the paper tunes SD 1.4; 1.5 has the same architecture
TUNED_FILE = "tuned_unet.safetensors"
TUNING_STATE = "tuning_state"


def _check_request(config_name: str, prompt: str, edits: list[str], out: str | Path, fmt: str, tuned, tuned_unet,
                   num_frames: int) -> None:
    """Everything a user can get wrong, refused by name before any checkpoint loads."""
    from minivdm.methods.tune_a_video import MIN_FRAMES, check_prompt

    if config_name not in BASE_CONFIGS:
        raise ValueError(f"tune-a-video inflates an SD 1.x image model: --config must be one of {BASE_CONFIGS}, "
                         f"got {config_name!r}")
    check_prompt(prompt, "--prompt")
    if not edits:
        raise ValueError("give at least one --edit prompt (the video as you want it, e.g. 'spider man is skiing on the beach')")
    for edit in edits:
        check_prompt(edit, "--edit")
    if fmt not in (".mp4", ".gif"):
        raise ValueError(f"--format must be mp4 or gif, got {fmt!r}")
    if tuned is not None and tuned_unet is not None:
        raise ValueError("give --tuned (a tuned-weights file) or --tuned-unet (a whole tuned U-Net folder), not both")
    if tuned is not None and not Path(tuned).is_file():
        raise FileNotFoundError(f"--tuned {tuned}: no such file (a {TUNED_FILE} written by minivdm tune-a-video)")
    if tuned_unet is not None and not Path(tuned_unet).is_dir():
        raise FileNotFoundError(f"--tuned-unet {tuned_unet}: no such folder (a Tune-A-Video unet/ folder)")
    if num_frames < MIN_FRAMES:
        raise ValueError(f"--frames must be >= {MIN_FRAMES} (the temporal layers need a frame before the current one), "
                         f"got {num_frames}")
    if Path(out).exists() and not Path(out).is_dir():
        raise NotADirectoryError(f"--out {out} is a file; tune-a-video writes a folder (tuned weights and one video per edit)")


def _source_frames(path: str | Path, num_frames: int, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, N, H, W) in [-1, 1]: the first ``num_frames`` frames of the source video, resized."""
    frames = read_control_frames(path, num_frames, option="--video", role="to tune on and edit")
    if tuple(frames.shape[-2:]) != size:
        frames = rearrange(F.interpolate(rearrange(frames, "c n h w -> n c h w"), size=size, mode="bilinear",
                                         align_corners=False, antialias=True).clamp(-1, 1), "n c h w -> c n h w")
    return frames[None]


@torch.no_grad()
def encode_video(vae, video: torch.Tensor, frames_per_batch: int = 8) -> torch.Tensor:
    """(1, 3, N, H, W) in [-1, 1] -> latents (1, 4, N, h, w), the mean of the VAE's posterior times its scaling factor."""
    frames = rearrange(video, "b c n h w -> (b n) c h w").to(device=vae.device, dtype=vae.dtype)
    latents = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in frames.split(frames_per_batch)])
    return rearrange(latents * vae.config.scaling_factor, "(b n) c h w -> b c n h w", b=video.shape[0])


def tune_a_video_full_scale(config_name: str, video: str | Path, prompt: str, edits: list[str], out: str | Path, *,
                            weights: str | None = None, tuned: str | Path | None = None,
                            tuned_unet: str | Path | None = None, allow_pickle: bool = False, tune_steps: int = 500,
                            learning_rate: float = 3e-5, num_frames: int = 8, steps: int = 50,
                            guidance_scale: float = 12.5, seed: int = 33, device: str | None = None,
                            dtype: str = "fp16", height: int | None = None, width: int | None = None, fps: int = 8,
                            fmt: str = ".mp4", gradient_checkpointing: bool | None = None, check_config: bool = True,
                            command: str = "") -> list[Path]:
    """Tune (or load tuned weights), then write one edited video per prompt in ``edits``; returns the files written."""
    from minivdm.io.video_files import write_video
    from minivdm.methods.text_to_image import encode_prompts, latent_size, load_components
    from minivdm.methods.text_to_video import decode_frames
    from minivdm.methods.tune_a_video import (OFFICIAL_TUNING, edit_video, load_tuned_weights, save_tuned_weights,
                                              tune_a_video)
    from minivdm.models.tune_a_video_unet import TuneAVideoUNet

    _check_request(config_name, prompt, edits, out, fmt, tuned, tuned_unet, num_frames)
    device, inference_dtype = _device_and_dtype(device, dtype)
    tuning = tuned is None and tuned_unet is None
    folder = resolve_weights(weights, config_name, IMAGE_HF_IDS)
    torch.manual_seed(seed)  # the temporal attention's initial weights, drawn at inflation: the same on every run
    # tuning keeps float32 weights (fp16 autocast on a GPU, as the official recipe's mixed precision); inference casts.
    # TuneAVideoUNet.from_pretrained inflates an image U-Net, or reads a tuned one in the official layout
    unet, vae, text_encoder, tokenizer, settings = load_components(
        folder, dtype=torch.float32 if tuning else inference_dtype, device=device, unet_class=TuneAVideoUNet)
    if tuned_unet is not None:
        unet = TuneAVideoUNet.from_pretrained(tuned_unet, dtype=inference_dtype, device=device, allow_pickle=allow_pickle)
    if check_config:
        check_architecture(unet.config, IMAGE_CONFIGS[config_name], config_name)
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    h, w = latent_size(unet, vae, height, width)
    source = _source_frames(video, num_frames, (h * vae_scale, w * vae_scale))
    latents = encode_video(vae, source).to(unet.conv_in.weight.dtype)
    text = encode_prompts(tokenizer, text_encoder, [prompt]).to(unet.conv_in.weight.dtype)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    if tuning:
        use_checkpointing = device != "cpu" if gradient_checkpointing is None else gradient_checkpointing
        unet.enable_gradient_checkpointing(use_checkpointing)
        config = replace(OFFICIAL_TUNING, steps=tune_steps, learning_rate=learning_rate, seed=seed,
                         checkpoint_every=min(100, tune_steps))
        mixed = "fp16" if inference_dtype == torch.float16 and device != "cpu" else "no"
        tune_a_video(unet, latents, text, settings.schedule, config=config, prediction_type=settings.prediction_type,
                     integer_timesteps=True, checkpoint_dir=out / TUNING_STATE, device="cuda" if device != "cpu" else "cpu",
                     mixed_precision=mixed, run_description={"base": str(folder), "prompt": prompt,
                                                            "video": str(Path(video).resolve()), "frames": num_frames,
                                                            "size": [h * vae_scale, w * vae_scale]})
        unet.enable_gradient_checkpointing(False)
        save_tuned_weights(unet, out / TUNED_FILE, {"command": command, "prompt": prompt, "config": config_name,
                                                    "video": str(video), "tune_steps": str(tune_steps)})
        unet, vae, text_encoder = (module.to(inference_dtype) for module in (unet, vae, text_encoder))
        latents, text = latents.to(inference_dtype), text.to(inference_dtype)
    elif tuned is not None:
        load_tuned_weights(unet, tuned)
    unet.eval()

    edit_text = encode_prompts(tokenizer, text_encoder, list(edits)).to(inference_dtype)
    null_text = encode_prompts(tokenizer, text_encoder, [""]).to(inference_dtype)
    times, step_ends = settings.times_and_step_ends(steps)
    written = []
    for index in range(len(edits)):  # one edit at a time: the memory of one video
        edited = edit_video(unet, latents, edit_text[index:index + 1], null_text, settings.schedule, times,
                            step_ends=step_ends, guidance_scale=guidance_scale,
                            prediction_type=settings.prediction_type, integer_timesteps=True,
                            generator=torch.Generator().manual_seed(seed), progress=True)
        frames = decode_frames(vae, edited).clamp(-1, 1)
        written.append(write_video(out / f"edit_{index}{fmt}", frames[0].cpu(), fps=fps))
    (out / "edits.json").write_text(json.dumps({"prompt": prompt, "edits": list(edits), "files": [p.name for p in written],
                                                "command": command}, indent=1) + "\n")
    return written
