"""Make-A-Video's frame interpolation on the toy world (chapter 9): 4 key frames of a 16-frame clip in, the 12
frames between them out (``minivdm.methods.frame_interpolation``).

The network is the toy Make-A-Video model (the frozen toy image model with pseudo-3D layers, trained on
unlabeled 8-frame clips, ``minivdm.toy.temporal_layers``) with its input widened to [z_t ; x * m ; m]; its
temporal layers and the widened first convolution are trained on 16-frame toy clips with the key frames at
0, 5, 10 and 15 given. Captions carry no motion words, as in the rest of the chapter. Measured against the
straight-line truth (the object's path in the real clip) and against blending the key frames' pixels.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from minivdm.methods.frame_interpolation import (FrameInterpolator, blend_key_frames, interpolate, key_frame_mask,
                                                 spread_key_frames, widen_for_interpolation)
from minivdm.io.checkpoints import write_safetensors
from minivdm.toy import DATA_DIR, load_trained_layers, read_metadata
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE, load_text_to_image
from minivdm.train import TrainConfig, describe, train

CLIP_FRAMES = 16
KEY_FRAMES = spread_key_frames(4, CLIP_FRAMES)  # [0, 5, 10, 15]
INTERPOLATION_BATCH_SIZE = 4  # clips per step (64 frames)
INTERPOLATION_DATASET_SIZE = 4000
HELD_OUT_SEED = 9119
INTERPOLATION_TRAIN = TrainConfig(steps=2000, learning_rate=1e-3, warmup_steps=100, ema_decay=0.995, seed=0,
                                  checkpoint_every=100, log_every=50)
WEIGHTS_FILE = "interpolation_layers.safetensors"
TOY_INTERPOLATION_DIR = DATA_DIR / "toy_frame_interpolation"


def clips(n: int, seed: int):
    """n single-object 16-frame toy clips with motion-free captions."""
    from minivdm.toyworld import generate
    from minivdm.toyworld.world import ToyWorldConfig, caption_for

    batch = generate(n, seed=seed, config=ToyWorldConfig(frames=CLIP_FRAMES, max_objects=1, name="interpolation16"))
    return replace(batch, captions=[caption_for(objects, with_motion=False) for objects in batch.objects])


def _is_trained(name: str, unet) -> bool:
    return unet.is_new(name) or name.startswith("conv_in.")


def build_interpolator(temporal_layers: str | Path | None):
    """(FrameInterpolator, tokenizer): the toy Make-A-Video model in ``temporal_layers`` (a folder written by
    ``train_toy_temporal_layers``; None: freshly inflated) widened for interpolation."""
    from minivdm.toy.temporal_layers import inflate, load_toy_temporal_layers

    if temporal_layers is None:
        image, tokenizer = load_text_to_image()
        unet, text_encoder = inflate(image.unet, "make-a-video"), image.text_encoder
    else:
        video, tokenizer, _ = load_toy_temporal_layers(temporal_layers)
        unet, text_encoder = video.unet, video.text_encoder
    return FrameInterpolator(widen_for_interpolation(unet), text_encoder), tokenizer


def train_toy_frame_interpolation(out: str | Path, *, temporal_layers: str | Path | None,
                                  config: TrainConfig = INTERPOLATION_TRAIN,
                                  dataset_size: int = INTERPOLATION_DATASET_SIZE,
                                  batch_size: int = INTERPOLATION_BATCH_SIZE, checkpoint_dir: str | Path | None = None,
                                  max_minutes: float | None = None, command: str = "", device: str = "cpu",
                                  progress: bool = True) -> Path:
    """Train the interpolation network (temporal layers and conv_in; the image model frozen) and write
    ``out/interpolation_layers.safetensors`` with the command and training figures in its metadata."""
    from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for
    from minivdm.diffusion.parameterization import training_target
    from minivdm.text import encode_captions

    torch.manual_seed(config.seed)
    model, tokenizer = build_interpolator(temporal_layers)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith("unet.") and _is_trained(name.removeprefix("unet."), model.unet))
    data = clips(dataset_size, config.seed)
    ids, _ = encode_captions(tokenizer, data.captions)
    mask = key_frame_mask(CLIP_FRAMES, KEY_FRAMES)

    def next_batch(step: int, generator: torch.Generator):
        pick = torch.randint(dataset_size, (batch_size,), generator=generator)
        t = torch.rand(batch_size, generator=generator)
        x = data.video[pick]
        return x, ids[pick], t, torch.randn(x.shape, generator=generator)

    def loss_fn(model, batch, generator: torch.Generator) -> torch.Tensor:
        x, input_ids, t, noise = batch
        z_t, eps = add_noise(x, t, TEXT_TO_IMAGE_SCHEDULE, noise=noise)
        alpha, sigma = alpha_sigma_for(TEXT_TO_IMAGE_SCHEDULE, t, x)
        prediction = model(z_t, t, input_ids, x, mask.to(x.device))
        return torch.nn.functional.mse_loss(prediction, training_target(x, eps, alpha, sigma, "v"))

    described = {"recipe": "toy-frame-interpolation", "dataset_size": dataset_size, "batch_size": batch_size,
                 "temporal_layers": None if temporal_layers is None else str(Path(temporal_layers).resolve()),
                 "key_frames": KEY_FRAMES}
    result = train(model, next_batch, loss_fn, config, checkpoint_dir, run_description=described, device=device,
                   progress=progress, max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    unet = result.ema_model.unet
    state = {name: p.detach().contiguous().cpu() for name, p in unet.named_parameters() if _is_trained(name, unet)}
    metadata = {"command": command, "train_config": describe(config), "steps": str(result.steps_done),
                "train_seconds": f"{result.seconds:.0f}", "dataset_size": str(dataset_size),
                "batch_size": str(batch_size), "key_frames": json.dumps(KEY_FRAMES),
                "temporal_layers": "" if temporal_layers is None else str(temporal_layers),
                "losses": json.dumps([round(loss, 5) for loss in result.losses]), "log_every": str(config.log_every)}
    return write_safetensors(Path(out) / WEIGHTS_FILE, state, metadata)


def load_toy_frame_interpolation(folder: str | Path = TOY_INTERPOLATION_DIR, device: str | torch.device = "cpu"):
    """(FrameInterpolator, tokenizer, metadata) from a folder written by ``train_toy_frame_interpolation``."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no interpolation network at {path}; make one with "
                                f"`python -m minivdm train-toy-frame-interpolation --out {folder}`")
    metadata = read_metadata(path)
    model, tokenizer = build_interpolator(None)
    expected = {name for name, _ in model.unet.named_parameters() if _is_trained(name, model.unet)}
    load_trained_layers(model.unet, path, expected, "the interpolation network's trained layers")
    return model.to(device).eval(), tokenizer, metadata


def path_error(videos: torch.Tensor, truth: torch.Tensor, frames: list[int]) -> dict[str, list]:
    """Per clip: the mean distance (px) between the object's centroid in ``videos`` and in the true clip over
    ``frames`` (inf when the object is not seen in one of them), and whether the oracle reads it as consistent."""
    from minivdm.toyworld.oracle import read_video

    rows = {"position_error": [], "consistent": [], "one_object": []}
    for seen, real in zip(read_video(videos), read_video(truth)):
        reference = real[0].trajectory[frames]
        if len(seen) != 1:
            rows["position_error"].append(float("inf"))
        else:
            distance = (seen[0].trajectory[frames] - reference).norm(dim=-1)
            rows["position_error"].append(distance.mean().item() if torch.isfinite(distance).all() else float("inf"))
        rows["consistent"].append(len(seen) == 1 and seen[0].consistent)
        rows["one_object"].append(len(seen) == 1)
    return rows


def evaluate_interpolation(model: FrameInterpolator, tokenizer, n: int = 100, *, batch_size: int = 20,
                           num_steps: int = 30, seed: int = 0) -> dict:
    """The network and pixel blending on n held-out clips: position error on the 12 generated frames against
    the real clip's path (median and share within 1 px), temporal consistency, one object seen."""
    from minivdm.text import encode_captions

    data = clips(n, HELD_OUT_SEED)
    missing = [i for i in range(CLIP_FRAMES) if i not in KEY_FRAMES]
    ids, _ = encode_captions(tokenizer, data.captions)
    outputs = []
    for start in range(0, n, batch_size):
        video = data.video[start:start + batch_size]
        outputs.append(interpolate(model, video[:, :, KEY_FRAMES], KEY_FRAMES, CLIP_FRAMES, ids[start:start + batch_size],
                                   None, TEXT_TO_IMAGE_SCHEDULE, num_steps=num_steps,
                                   generator=torch.Generator().manual_seed(seed + start)).clamp(-1, 1))
    generated = torch.cat(outputs)
    blended = blend_key_frames(data.video[:, :, KEY_FRAMES], KEY_FRAMES, CLIP_FRAMES)
    table = {}
    for name, videos in (("interpolation network", generated), ("pixel blending", blended)):
        rows = path_error(videos, data.video, missing)
        errors = torch.tensor(rows["position_error"])
        table[name] = {"median_position_error_px": errors.median().item(),
                       "within_1px": (errors <= 1.0).float().mean().item(),
                       "consistent": sum(rows["consistent"]) / n, "one_object": sum(rows["one_object"]) / n}
    return {"clips": n, "table": table, "videos": {"interpolation network": generated, "pixel blending": blended,
                                                   "real": data.video}}
