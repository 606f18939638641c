"""Temporal layers learned from unlabeled video on the toy world (chapter 9): the shipped toy text-to-image
model, frozen, inflated with Make-A-Video's pseudo-3D layers or Video LDM's alpha-merged ones, and only the
new layers trained on toy clips whose captions say nothing about motion ("a red circle", never "moving left").

Make-A-Video's point (Singer et al., 2022, Sec. 3.3): the text-image pairs teach what things look like, and
unlabeled video teaches how things move. Here the model is asked for "a red circle" and must produce a clip in
which a red circle moves as toy objects do: in a straight line at constant speed, or not at all. Which
direction is not prompted, so the oracle reports its distribution rather than an accuracy.

Both designs train the same way (``train_toy_temporal_layers``): same clips, batches, steps, learning rate
and seeds; the only difference is the inflation. Clips are single objects (the toy world's ``max_objects=1``)
of 8 frames; t is continuous in [0, 1] and the model predicts v, as the image model does.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from minivdm.io.checkpoints import write_safetensors
from minivdm.toy import DATA_DIR, load_trained_layers, read_metadata
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_DIR, TEXT_TO_IMAGE_SCHEDULE, ToyTextToImage, load_text_to_image
from minivdm.train import TrainConfig, describe, train

DESIGNS = ("make-a-video", "video-ldm")
UNLABELED_FRAMES = 8
UNLABELED_DATASET_SIZE = 6000
UNLABELED_BATCH_SIZE = 8  # clips per step (64 frames through the image U-Net)
CAPTION_DROPOUT = 0.1  # as the image model was trained: the unconditional branch guidance needs
HELD_OUT_SEED = 9009  # prompts and clips no model of the chapter was trained on
# New layers only, from the identity; constant rate so that a run can be extended.
TEMPORAL_LAYERS_TRAIN = TrainConfig(steps=3000, learning_rate=1e-3, warmup_steps=100, ema_decay=0.995, seed=0,
                                    checkpoint_every=100, log_every=50)
WEIGHTS_FILE = "temporal_layers.safetensors"


def unlabeled_world(frames: int = UNLABELED_FRAMES):
    from minivdm.toyworld.world import ToyWorldConfig

    return ToyWorldConfig(frames=frames, max_objects=1, name=f"unlabeled{frames}")


def unlabeled_clips(n: int, seed: int):
    """n toy clips (a ``ToyBatch``) with their captions stripped of motion: "a red circle moving left" ->
    "a red circle". The objects (ground truth) still say how each one moves."""
    from minivdm.toyworld import generate
    from minivdm.toyworld.world import caption_for

    batch = generate(n, seed=seed, config=unlabeled_world())
    return replace(batch, captions=[caption_for(objects, with_motion=False) for objects in batch.objects])


def inflate(image_unet, design: str):
    """The image U-Net inflated by ``design`` ("make-a-video" or "video-ldm"), equal to it frame by frame."""
    from minivdm.models.make_a_video_unet import inflate_for_make_a_video
    from minivdm.models.video_ldm_unet import inflate_for_video_ldm

    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    return {"make-a-video": inflate_for_make_a_video, "video-ldm": inflate_for_video_ldm}[design](image_unet)


def model_dir(design: str) -> Path:
    return DATA_DIR / ("toy_make_a_video" if design == "make-a-video" else "toy_video_ldm")


def train_toy_temporal_layers(out: str | Path, *, design: str, config: TrainConfig = TEMPORAL_LAYERS_TRAIN,
                              dataset_size: int = UNLABELED_DATASET_SIZE, batch_size: int = UNLABELED_BATCH_SIZE,
                              checkpoint_dir: str | Path | None = None, image_model: str | Path = TEXT_TO_IMAGE_DIR,
                              max_minutes: float | None = None, command: str = "", device: str = "cpu",
                              progress: bool = True) -> Path:
    """Inflate the toy text-to-image model by ``design``, train only the new layers on unlabeled clips, write
    ``out/temporal_layers.safetensors`` (the new layers' weights; metadata: command, design, training figures)."""
    from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for
    from minivdm.diffusion.parameterization import training_target
    from minivdm.text import encode_captions

    image, tokenizer = load_text_to_image(image_model)
    torch.manual_seed(config.seed)  # the new layers' initial weights
    unet = inflate(image.unet, design)
    trainable = unet.freeze_image_layers()
    image.text_encoder.requires_grad_(False)
    model = ToyTextToImage(unet, image.text_encoder).train()
    clips = unlabeled_clips(dataset_size, config.seed)
    ids, _ = encode_captions(tokenizer, clips.captions)
    empty, _ = encode_captions(tokenizer, [""])

    def next_batch(step: int, generator: torch.Generator):
        pick = torch.randint(dataset_size, (batch_size,), generator=generator)
        dropped = torch.rand(batch_size, generator=generator) < CAPTION_DROPOUT
        t = torch.rand(batch_size, generator=generator)
        x = clips.video[pick]
        return x, torch.where(dropped[:, None], empty, ids[pick]), t, torch.randn(x.shape, generator=generator)

    def loss_fn(model, batch, generator: torch.Generator) -> torch.Tensor:
        x, input_ids, t, noise = batch
        z_t, eps = add_noise(x, t, TEXT_TO_IMAGE_SCHEDULE, noise=noise)
        alpha, sigma = alpha_sigma_for(TEXT_TO_IMAGE_SCHEDULE, t, x)
        return torch.nn.functional.mse_loss(model(z_t, t, input_ids), training_target(x, eps, alpha, sigma, "v"))

    described = {"recipe": "toy-temporal-layers", "design": design, "dataset_size": dataset_size,
                 "batch_size": batch_size, "image_model": str(Path(image_model).resolve())}
    result = train(model, next_batch, loss_fn, config, checkpoint_dir, run_description=described, device=device,
                   progress=progress, max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    trained = result.ema_model.unet
    state = {name: parameter.detach().contiguous().cpu() for name, parameter in trained.named_parameters()
             if name in set(trainable)}
    metadata = {"command": command, "design": design, "train_config": describe(config), "steps": str(result.steps_done),
                "train_seconds": f"{result.seconds:.0f}", "dataset_size": str(dataset_size),
                "batch_size": str(batch_size), "losses": json.dumps([round(loss, 5) for loss in result.losses]),
                "log_every": str(config.log_every), "base": "toy_text_to_image"}
    return write_safetensors(Path(out) / WEIGHTS_FILE, state, metadata)


def load_toy_temporal_layers(folder: str | Path, device: str | torch.device = "cpu"):
    """(model, tokenizer, metadata): the toy text-to-image model inflated by the design the folder was trained
    with, its new layers loaded (every name and shape checked). ``model(z_t, t, input_ids)`` predicts v on clips."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no trained temporal layers at {path}; make them with "
                                f"`python -m minivdm train-toy-temporal-layers --design make-a-video --out {folder}`")
    metadata = read_metadata(path)
    image, tokenizer = load_text_to_image()
    unet = inflate(image.unet, metadata.get("design", ""))
    load_trained_layers(unet, path, set(unet.new_parameter_names()), f"the new layers of a {metadata['design']} inflation")
    return ToyTextToImage(unet, image.text_encoder).to(device).eval(), tokenizer, metadata


# ------------------------------------------------------------------------------------------------
# Measured by the oracle

@dataclass(frozen=True)
class SamplingSettings:
    num_steps: int = 30
    guidance_scale: float = 3.0


@torch.no_grad()
def sample_clips(model: ToyTextToImage, tokenizer, prompts: list[str], *, settings: SamplingSettings = SamplingSettings(),
                 seed: int = 0, frames: int = UNLABELED_FRAMES) -> torch.Tensor:
    """Clips (B, 3, T, 32, 32) in [-1, 1] for motion-free prompts: our DDIM with classifier-free guidance."""
    from minivdm.diffusion import guided_model, sample
    from minivdm.text import encode_captions

    ids, _ = encode_captions(tokenizer, list(prompts))
    null, _ = encode_captions(tokenizer, [""] * len(prompts))
    device = next(model.parameters()).device
    z_1 = torch.randn(len(prompts), 3, frames, 32, 32, generator=torch.Generator().manual_seed(seed)).to(device)
    model_fn = guided_model(model, ids.to(device), null.to(device), settings.guidance_scale)
    return sample(model_fn, z_1, TEXT_TO_IMAGE_SCHEDULE, TEXT_TO_IMAGE_SCHEDULE.uniform_times(settings.num_steps),
                  prediction_type="v", progress=False).clamp(-1, 1).cpu()


def held_out_prompts(n: int) -> tuple[list[str], list]:
    """n motion-free prompts of held-out clips, and the clips' objects (their motion is what the data would do)."""
    clips = unlabeled_clips(n, HELD_OUT_SEED)
    return clips.captions, clips.objects


def score_motion(videos: torch.Tensor, prompted: list[tuple[str, str]]) -> dict:
    """Per clip: one object seen; colour and shape as prompted (identity kept); consistent (the oracle's: seen in
    every frame, stable size, colour and shape, a straight path at constant speed); moving cleanly (consistent
    and not still); and the motion read (left/right/up/down/still, or "none" when no single object is seen)."""
    from minivdm.toyworld.oracle import read_video

    rows = {"one_object": [], "identity": [], "consistent": [], "moving_cleanly": [], "motion": []}
    for (colour, shape), objects in zip(prompted, read_video(videos)):
        obj = objects[0] if len(objects) == 1 else None
        rows["one_object"].append(obj is not None)
        rows["identity"].append(obj is not None and (obj.colour, obj.shape) == (colour, shape))
        rows["consistent"].append(obj is not None and obj.consistent)
        rows["moving_cleanly"].append(obj is not None and obj.consistent and obj.motion != "still")
        rows["motion"].append(obj.motion if obj is not None else "none")
    return rows


def summarise_motion(rows: dict) -> dict:
    """Shares over the clips, and the distribution of the motion read."""
    from minivdm.toyworld.world import MOTIONS

    n = len(rows["motion"])
    out = {key: sum(values) / n for key, values in rows.items() if key != "motion"}
    out["motion_distribution"] = {motion: rows["motion"].count(motion) / n for motion in (*MOTIONS, "none")}
    out["clips"] = n
    return out


def evaluate_toy_temporal_layers(model: ToyTextToImage, tokenizer, n: int = 100, *, batch_size: int = 25,
                                 settings: SamplingSettings = SamplingSettings(), seed: int = 0) -> dict:
    """Oracle figures of one sampled clip per held-out prompt, beside the same figures read on the held-out
    clips themselves (what the data does)."""
    from minivdm.toyworld.oracle import parse_caption

    prompts, _ = held_out_prompts(n)
    prompted = [parse_caption(prompt)[0][:2] for prompt in prompts]
    start = time.perf_counter()
    videos = torch.cat([sample_clips(model, tokenizer, prompts[i:i + batch_size], settings=settings, seed=seed + i)
                        for i in range(0, n, batch_size)])
    data = unlabeled_clips(n, HELD_OUT_SEED).video
    return {"model": summarise_motion(score_motion(videos, prompted)),
            "data": summarise_motion(score_motion(data, prompted)),
            "sampling_seconds": time.perf_counter() - start, "videos": videos}
