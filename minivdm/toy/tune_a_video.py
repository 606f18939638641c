"""Tune-A-Video on the toy world: the shipped toy text-to-image model (chapter 2), never trained on video, is
inflated and tuned on ONE held-out clip ("a red circle moving right"), then asked for edits of that clip
("a blue circle moving right", "a red square moving right", "a blue square moving right"). The oracle checks
that the edit took (colour, shape) and that the source's motion survived (direction, trajectory).

Sources are single moving objects, the paper's setting (one subject doing one thing). Time is continuous
(t in [0, 1], the toy models' convention) and the model predicts v.
"""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from minivdm.methods.tune_a_video import edit_video, tune_a_video
from minivdm.models.tune_a_video_unet import TuneAVideoUNet, inflate_for_tune_a_video
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE, ToyTextToImage
from minivdm.train import TrainConfig

HELD_OUT_SEED = 8008  # toy videos no model of the course was trained on
TOY_TUNING = TrainConfig(steps=500, learning_rate=3e-4, warmup_steps=0, ema_decay=0.0, seed=0,
                         checkpoint_every=100, log_every=25)
TUNING_STEPS = (0, 100, 300, 500)  # the sweep; 0 is the inflated image model, untuned
EDIT_KINDS = ("colour", "shape", "colour and shape")
PATH_TOLERANCE = 2.0  # px: an edit keeps the source's trajectory when its path stays this close on average


@dataclass(frozen=True)
class ToyEditSettings:
    num_steps: int = 30
    guidance_scale: float = 3.0
    inversion: bool = True


def held_out_sources(n: int, num_frames: int = 8, seed: int = HELD_OUT_SEED):
    """n toy clips (a ``ToyBatch``) of one moving object each (no "standing still": there would be no motion to keep)."""
    from minivdm.toyworld.world import ToyBatch, ToyWorldConfig, generate

    config = ToyWorldConfig(frames=num_frames, max_objects=1, name=f"tune-a-video{num_frames}")
    pool = generate(4 * n, seed, config)
    keep = [i for i, objects in enumerate(pool.objects) if objects[0].motion != "still"][:n]
    if len(keep) < n:
        raise ValueError(f"only {len(keep)} moving clips among {4 * n} drawn; ask for fewer")
    index = torch.tensor(keep)
    return ToyBatch(video=pool.video[index], masks=pool.masks[index], depth=pool.depth[index],
                    edges=pool.edges[index], positions=pool.positions[index],
                    captions=[pool.captions[i] for i in keep], objects=[pool.objects[i] for i in keep],
                    config=config, pan_velocity=pool.pan_velocity[index])


def edit_captions(source_object, seed: int = 0) -> list[tuple[str, str, str]]:
    """Three edits (colour, shape, motion) of the source object: a new colour; a new shape; both new. The motion is kept."""
    from minivdm.toyworld.world import PALETTE, SHAPES

    generator = torch.Generator().manual_seed(seed)

    def other(options, current):
        choices = [option for option in options if option != current]
        return choices[int(torch.randint(len(choices), (1,), generator=generator))]

    colour, shape, motion = source_object.colour, source_object.shape, source_object.motion
    new_colour, new_shape = other(tuple(PALETTE), colour), other(SHAPES, shape)
    return [(new_colour, shape, motion), (colour, new_shape, motion), (new_colour, new_shape, motion)]


def caption(colour: str, shape: str, motion: str) -> str:
    return f"a {colour} {shape}" + (" standing still" if motion == "still" else f" moving {motion}")


def embed(model: ToyTextToImage, tokenizer, captions: list[str]) -> torch.Tensor:
    """(B, L, 64) hidden states of the toy CLIP text encoder (frozen)."""
    from minivdm.text import encode_captions

    input_ids, _ = encode_captions(tokenizer, list(captions))
    device = next(model.parameters()).device
    with torch.no_grad():
        return model.text_encoder(input_ids.to(device))[0]


def tune_toy(model: ToyTextToImage, tokenizer, source: torch.Tensor, source_caption: str, *, steps: int,
             sparse_causal: bool = True, checkpoint_dir: str | Path | None = None,
             config: TrainConfig = TOY_TUNING, progress: bool = False) -> TuneAVideoUNet:
    """The toy model's U-Net inflated and tuned ``steps`` steps on one clip (1, 3, T, 32, 32). With the same
    ``checkpoint_dir``, a later call with more steps continues the same run (constant learning rate).

    The new temporal attention's initial weights (all but its zero output projection) are drawn from torch's global
    generator when the U-Net is inflated, as any new layer's are; its state therefore decides the run as much as the
    training seed does. A fresh process running the same calls in the same order (the example's command, the
    benchmark with the same ``--shard``) repeats them exactly; seed the generator first for a run on its own."""
    unet = inflate_for_tune_a_video(model.unet, sparse_causal=sparse_causal)
    if steps > 0:
        with tempfile.TemporaryDirectory() if checkpoint_dir is None else nullcontext(checkpoint_dir) as folder:
            tune_a_video(unet, source, embed(model, tokenizer, [source_caption]), TEXT_TO_IMAGE_SCHEDULE,
                         config=replace(config, steps=steps), prediction_type="v", integer_timesteps=False,
                         checkpoint_dir=folder, progress=progress,
                         run_description={"source_caption": source_caption, "sparse_causal": sparse_causal})
    return unet.eval()


def edit_toy(unet: TuneAVideoUNet, model: ToyTextToImage, tokenizer, source: torch.Tensor, edits: list[str], *,
             settings: ToyEditSettings = ToyEditSettings(), seed: int = 0) -> torch.Tensor:
    """Edited videos (E, 3, T, 32, 32) in [-1, 1], one per caption in ``edits``."""
    times = TEXT_TO_IMAGE_SCHEDULE.uniform_times(settings.num_steps)
    return edit_video(unet, source, embed(model, tokenizer, edits), embed(model, tokenizer, [""]),
                      TEXT_TO_IMAGE_SCHEDULE, times, guidance_scale=settings.guidance_scale, prediction_type="v",
                      integer_timesteps=False, inversion=settings.inversion, progress=False,
                      generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)


def path_errors(videos: torch.Tensor, source: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per video (E,): mean distance (px) between the edited object's centroid and the source object's in every
    frame ("position"), and between their paths, each relative to its own first frame ("path": the motion,
    whatever the new shape's centroid offset); inf where either object is not seen."""
    from minivdm.toyworld.oracle import read_video

    reference = read_video(source)[0]
    if not reference:
        raise ValueError("the oracle sees no object in the source clip")
    ref = reference[0].trajectory
    position, path = [], []
    for objects in read_video(videos):
        if not objects:
            position.append(float("inf")), path.append(float("inf"))
            continue
        seen = objects[0].trajectory
        distance = (seen - ref).norm(dim=-1)
        drift = ((seen - seen[0]) - (ref - ref[0])).norm(dim=-1)
        position.append(distance.nanmean().item() if torch.isfinite(distance).any() else float("inf"))
        path.append(drift.nanmean().item() if torch.isfinite(drift).any() else float("inf"))
    return {"position": torch.tensor(position), "path": torch.tensor(path)}


def score_edits(videos: torch.Tensor, source: torch.Tensor, edits: list[tuple[str, str, str]]) -> dict[str, list]:
    """Per edited video: colour, shape, motion (direction) as prompted; one object seen; the trajectory errors;
    temporal consistency (the oracle's: identity, size, colour and path stable over the frames)."""
    from minivdm.toyworld.oracle import read_video

    seen = read_video(videos)
    errors = path_errors(videos, source)
    rows = {"colour": [], "shape": [], "direction": [], "edit_followed": [], "one_object": [], "consistent": [],
            "position_error": errors["position"].tolist(), "path_error": errors["path"].tolist()}
    for (colour, shape, motion), objects in zip(edits, seen):
        obj = objects[0] if objects else None
        rows["colour"].append(obj is not None and obj.colour == colour)
        rows["shape"].append(obj is not None and obj.shape == shape)
        rows["direction"].append(obj is not None and obj.motion == motion)
        rows["edit_followed"].append(obj is not None and (obj.colour, obj.shape) == (colour, shape))
        rows["one_object"].append(len(objects) == 1)
        rows["consistent"].append(obj is not None and obj.consistent)
    return rows


def summarise(rows: dict[str, list]) -> dict[str, float]:
    """Shares (booleans) and the trajectory figures over every scored edit."""
    out = {key: sum(values) / len(values) for key, values in rows.items() if key not in ("position_error", "path_error")}
    path = torch.tensor(rows["path_error"])
    position = torch.tensor(rows["position_error"])
    out["path_within_2px"] = (path <= PATH_TOLERANCE).float().mean().item()
    out["median_path_error_px"] = path.median().item()
    out["median_position_error_px"] = position.median().item()
    out["edits"] = len(rows["colour"])
    return out


# ------------------------------------------------------------------------------------------------
# The shipped example: the toy model tuned on one held-out clip (data/toy_tune_a_video)

TUNED_EXAMPLE_SOURCE = 0  # index into held_out_sources


def tuned_example_dir() -> Path:
    from minivdm.toy import DATA_DIR

    return DATA_DIR / "toy_tune_a_video"


def train_toy_tune_a_video(out: str | Path | None = None, *, source_index: int = TUNED_EXAMPLE_SOURCE,
                           steps: int = TOY_TUNING.steps, checkpoint_dir: str | Path | None = None,
                           command: str = "") -> Path:
    """Tune the shipped toy text-to-image model on held-out clip ``source_index`` and write the tuned parameters
    (``tuned_unet.safetensors``, with the command, the source and the training time in its metadata)."""
    import time

    from minivdm.methods.tune_a_video import save_tuned_weights
    from minivdm.toy.text_to_image import load_text_to_image

    out = Path(out) if out is not None else tuned_example_dir()
    model, tokenizer = load_text_to_image()
    batch = held_out_sources(source_index + 1)
    source, source_caption = batch.video[source_index:source_index + 1], batch.captions[source_index]
    torch.manual_seed(TOY_TUNING.seed)  # the temporal attention's initial weights: the same on every run
    start = time.perf_counter()
    unet = tune_toy(model, tokenizer, source, source_caption, steps=steps, checkpoint_dir=checkpoint_dir, progress=True)
    seconds = time.perf_counter() - start
    return save_tuned_weights(unet, out / "tuned_unet.safetensors", {
        "command": command, "source_index": str(source_index), "held_out_seed": str(HELD_OUT_SEED),
        "source_caption": source_caption, "steps": str(steps), "train_seconds": str(round(seconds)),
        "train_config": str(replace(TOY_TUNING, steps=steps)), "base": "toy_text_to_image"})


def load_toy_tune_a_video(folder: str | Path | None = None, device: str | torch.device = "cpu"):
    """(tuned U-Net, toy text-to-image model, tokenizer, source clip (1, 3, 8, 32, 32), its caption) of the shipped
    example; the tuned weights are checked against the base model they were tuned from."""
    from minivdm.io.checkpoints import read_safetensors_metadata
    from minivdm.methods.tune_a_video import load_tuned_weights
    from minivdm.toy.text_to_image import load_text_to_image

    path = Path(folder if folder is not None else tuned_example_dir()) / "tuned_unet.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no tuned example at {path}; make one with "
                                f"`python -m minivdm train-toy-tune-a-video --out {path.parent}`")
    metadata = read_safetensors_metadata(path)
    model, tokenizer = load_text_to_image(device=device)
    unet = load_tuned_weights(inflate_for_tune_a_video(model.unet), path).eval()
    index = int(metadata["source_index"])
    batch = held_out_sources(index + 1, seed=int(metadata["held_out_seed"]))
    return unet, model, tokenizer, batch.video[index:index + 1].to(device), batch.captions[index]
