"""The toy world's Gen-1 (chapter 10): edit a toy clip by structure (its depth maps) and content (the toy
CLIP image embedding of another clip's frame, or of a caption through the prior).

* structure s: the toy world's ground-truth depth (``ToyBatch.depth_maps``: background -1, the object 1), the
  toy analogue of MiDaS depth; blurred to level t_s in {0, ..., 4} (32x32 down to 2x2 before upsampling).
* content c: ``data/toy_clip``'s image embedding of one random frame of the same clip (training, the paper's
  recipe), or of a frame of another clip (editing); one token of width 64, the toy text encoder's width. Half the
  training clips take their content from another clip whose object has the same colour (``CONTENT_SWAP``, our
  addition): toy content and structure both show the shape, and a model that only ever saw them agree reads the
  shape from the content too, so an edit to a differently shaped content image changes the shape
  (``bench/toy_gen1.py`` measures the paper's recipe, ``--content-swap 0``, beside it).
* the model: the shipped toy text-to-image U-Net with one zero-weight depth input channel, inflated with the
  pseudo-3D layers of ``data/toy_make_a_video`` (both starting points trained earlier in the course); every
  weight of the U-Net is then trained, as Gen-1 trains the whole model, on unlabeled toy clips (8 frames,
  one object).
* the prior: a small MLP from the toy CLIP's caption embedding to its image embedding
  (``minivdm.models.clip_prior``), trained on the same clips' (motion-free caption, frame) pairs.

Edits are measured by the oracle on held-out (source clip, content image) pairs whose colours differ:
structure kept (object mask IoU with the source per frame, the source's motion read back), content taken (the
content image's colour read back), temporal consistency.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from minivdm.io.checkpoints import load_into, read_safetensors, write_safetensors
from minivdm.methods.gen1 import blur_structure, content_tokens, edit_video, null_content
from minivdm.toy import DATA_DIR, read_metadata
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE
from minivdm.train import TrainConfig, describe, train

GEN1_DIR = DATA_DIR / "toy_gen1"
UNET_FILE, PRIOR_FILE = "gen1_unet.safetensors", "prior.safetensors"
MAX_STRUCTURE_LEVEL = 4            # T_s: t_s in {0, ..., 4}, 32x32 .. 2x2
CONTENT_DROPOUT = 0.1              # the null content that guidance needs
# Share of training clips whose content image is a frame of ANOTHER clip with an object of the same colour (the rest:
# one of the clip's own frames, as in the paper). Toy content and structure both show the shape; with the clip's own
# frame only, the model can read the shape from either, and follows the content's when an edit makes them disagree.
CONTENT_SWAP = 0.5
GEN1_DATASET_SIZE = 6000
GEN1_BATCH_SIZE = 8                # clips of 8 frames per step
GEN1_TRAIN = TrainConfig(steps=3000, learning_rate=5e-4, warmup_steps=100, ema_decay=0.995, seed=0,
                         checkpoint_every=100, log_every=50)
PRIOR_TRAIN = TrainConfig(steps=1500, learning_rate=2e-3, warmup_steps=50, ema_decay=0.99, seed=0,
                          checkpoint_every=500, log_every=100, decay="cosine")
PRIOR_BATCH_SIZE = 256
HELD_OUT_SEED = 10_010             # source clips no model of the course was trained on
CONTENT_SEED = 10_011              # the clips whose frames give the content images


class ToyGen1(torch.nn.Module):
    """``model(z_t, t, content, structure)`` predicts v; t continuous in [0, 1] (fed as t * 1000)."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, z_t, t, content, structure):
        return self.unet(z_t, t * 1000, content, structure)


def build_toy_gen1(temporal_layers: str | Path | None = DATA_DIR / "toy_make_a_video") -> ToyGen1:
    """The untrained toy Gen-1: the toy text-to-image U-Net widened by one depth channel (zero weights) and
    inflated, its temporal layers loaded from a toy Make-A-Video folder (None: fresh, the identity)."""
    from minivdm.models.gen1_unet import Gen1UNet, with_structure_channels
    from minivdm.toy.temporal_layers import WEIGHTS_FILE
    from minivdm.toy.text_to_image import load_text_to_image

    image, _ = load_text_to_image()
    unet = Gen1UNet.inflate(with_structure_channels(image.unet, 1))
    if temporal_layers is not None:
        state = read_safetensors(Path(temporal_layers) / WEIGHTS_FILE)
        if set(state) != set(unet.new_parameter_names()):
            raise ValueError(f"{temporal_layers} does not hold the pseudo-3D layers of the toy U-Net")
        load_into(unet, state, strict=False)
    return ToyGen1(unet)


def toy_clips(n: int, seed: int):
    """n single-object 8-frame toy clips, captions without motion (the prior's captions)."""
    from minivdm.toy.temporal_layers import unlabeled_clips

    return unlabeled_clips(n, seed)


def frame_embeddings(scorer, video: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    """(B, T, D): the toy CLIP image embedding of every frame of every clip."""
    from einops import rearrange

    frames = rearrange(video, "b c t h w -> (b t) c h w")
    embeddings = torch.cat([scorer.image_embeddings(frames[i:i + batch]) for i in range(0, len(frames), batch)])
    return rearrange(embeddings, "(b t) d -> b t d", b=video.shape[0])


def train_toy_gen1_prior(out: str | Path, *, config: TrainConfig = PRIOR_TRAIN, dataset_size: int = GEN1_DATASET_SIZE,
                         command: str = "", progress: bool = True) -> Path:
    """Train the prior u (toy CLIP caption embedding) -> e (the image embedding of a frame of that caption's clip)
    and write ``out/prior.safetensors``."""
    from minivdm.models.clip_prior import ClipPrior, prior_loss
    from minivdm.toy.clip import load_toy_clip_scorer

    scorer = load_toy_clip_scorer()
    clips = toy_clips(dataset_size, config.seed + 1)
    images = frame_embeddings(scorer, clips.video)
    texts = scorer.text_embeddings(clips.captions)
    torch.manual_seed(config.seed)
    prior = ClipPrior(texts.shape[1], images.shape[2])

    def next_batch(step: int, generator: torch.Generator):
        pick = torch.randint(dataset_size, (PRIOR_BATCH_SIZE,), generator=generator)
        frame = torch.randint(images.shape[1], (PRIOR_BATCH_SIZE,), generator=generator)
        return texts[pick], images[pick, frame]

    result = train(prior, next_batch, lambda model, batch, generator: prior_loss(model, *batch), config, None,
                   run_description={"recipe": "toy-gen1-prior"}, progress=progress)
    state = {name: p.detach().contiguous() for name, p in result.ema_model.state_dict().items()}
    metadata = {"command": command, "train_config": describe(config), "text_dim": str(prior.text_dim),
                "image_dim": str(prior.image_dim), "train_seconds": f"{result.seconds:.0f}",
                "losses": json.dumps([round(loss, 5) for loss in result.losses])}
    return write_safetensors(Path(out) / PRIOR_FILE, state, metadata)


def content_clips(pick: torch.Tensor, colours: list[str], swap: float, generator: torch.Generator) -> torch.Tensor:
    """For each picked clip, the clip whose frame gives its content: itself, or with probability ``swap`` a random clip
    (of all, ``colours`` giving each one's object colour) whose object has the same colour."""
    by_colour = _clips_by_colour(tuple(colours))
    swapped = torch.rand(len(pick), generator=generator) < swap
    donor = torch.stack([group[torch.randint(len(group), (1,), generator=generator)][0]
                         for group in (by_colour[colours[int(i)]] for i in pick)])
    return torch.where(swapped, donor, pick)


@functools.lru_cache(maxsize=4)
def _clips_by_colour(colours: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {colour: torch.tensor([j for j, other in enumerate(colours) if other == colour]) for colour in set(colours)}


def train_toy_gen1(out: str | Path, *, config: TrainConfig = GEN1_TRAIN, dataset_size: int = GEN1_DATASET_SIZE,
                   batch_size: int = GEN1_BATCH_SIZE, content_swap: float = CONTENT_SWAP,
                   checkpoint_dir: str | Path | None = None,
                   max_minutes: float | None = None, command: str = "", device: str = "cpu",
                   progress: bool = True) -> Path:
    """Train the toy Gen-1 (every U-Net weight) and write ``out/gen1_unet.safetensors`` (metadata: the command,
    training figures). ``content_swap``: the share of clips whose content comes from another clip of the same colour
    (0: always the clip's own frame, the paper's recipe)."""
    from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for
    from minivdm.diffusion.parameterization import training_target
    from minivdm.toy.clip import load_toy_clip_scorer

    torch.manual_seed(config.seed)
    model = build_toy_gen1().train()
    clips = toy_clips(dataset_size, config.seed)
    depth = clips.depth_maps
    if not 0.0 <= content_swap <= 1.0:
        raise ValueError(f"content_swap must be a share in [0, 1], got {content_swap!r}")
    embeddings = frame_embeddings(load_toy_clip_scorer(), clips.video)  # (N, T, 64), the frozen toy CLIP's
    colours = [objects[0].colour for objects in clips.objects]

    def next_batch(step: int, generator: torch.Generator):
        pick = torch.randint(dataset_size, (batch_size,), generator=generator)
        frame = torch.randint(embeddings.shape[1], (batch_size,), generator=generator)   # c: one of its own frames
        content = content_tokens(embeddings[content_clips(pick, colours, content_swap, generator), frame])
        dropped = torch.rand(batch_size, generator=generator) < CONTENT_DROPOUT
        content = torch.where(dropped[:, None, None], null_content(content), content)
        t_s = torch.randint(MAX_STRUCTURE_LEVEL + 1, (batch_size,), generator=generator)
        structure = blur_structure(depth[pick], t_s)
        t = torch.rand(batch_size, generator=generator)
        x = clips.video[pick]
        return x, content, structure, t, torch.randn(x.shape, generator=generator)

    def loss_fn(model, batch, generator: torch.Generator) -> torch.Tensor:
        x, content, structure, t, noise = batch
        z_t, eps = add_noise(x, t, TEXT_TO_IMAGE_SCHEDULE, noise=noise)
        alpha, sigma = alpha_sigma_for(TEXT_TO_IMAGE_SCHEDULE, t, x)
        v = training_target(x, eps, alpha, sigma, "v")
        return torch.nn.functional.mse_loss(model(z_t, t, content, structure), v)

    described = {"recipe": "toy-gen1", "dataset_size": dataset_size, "batch_size": batch_size,
                 "max_structure_level": MAX_STRUCTURE_LEVEL, "content_dropout": CONTENT_DROPOUT,
                 "content_swap": content_swap}
    result = train(model, next_batch, loss_fn, config, checkpoint_dir, run_description=described, device=device,
                   progress=progress, max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    state = {name: p.detach().contiguous().cpu() for name, p in result.ema_model.unet.state_dict().items()}
    metadata = {"command": command, "train_config": describe(config), "steps": str(result.steps_done),
                "train_seconds": f"{result.seconds:.0f}", "dataset_size": str(dataset_size),
                "batch_size": str(batch_size), "max_structure_level": str(MAX_STRUCTURE_LEVEL),
                "content_swap": str(content_swap),
                "losses": json.dumps([round(loss, 5) for loss in result.losses]), "log_every": str(config.log_every),
                "base": "toy_text_to_image + toy_make_a_video"}
    return write_safetensors(Path(out) / UNET_FILE, state, metadata)


def load_toy_gen1(folder: str | Path = GEN1_DIR, device: str | torch.device = "cpu"):
    """(model, prior, metadata): the trained toy Gen-1 (every name and shape checked) and its prior."""
    from minivdm.models.clip_prior import ClipPrior
    from minivdm.models.gen1_unet import Gen1UNet
    from minivdm.configs.stable_diffusion import TINY
    from dataclasses import replace

    folder = Path(folder)
    path = folder / UNET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no trained toy Gen-1 at {path}; make it with "
                                f"`python -m minivdm train-toy-gen1 --out {folder}`")
    unet = Gen1UNet(replace(TINY, in_channels=TINY.in_channels + 1))
    load_into(unet, read_safetensors(path), strict=True)
    prior_metadata = read_metadata(folder / PRIOR_FILE)
    prior = ClipPrior(int(prior_metadata["text_dim"]), int(prior_metadata["image_dim"]))
    load_into(prior, read_safetensors(folder / PRIOR_FILE), strict=True)
    return ToyGen1(unet).to(device).eval(), prior.to(device).eval(), read_metadata(path)


# ------------------------------------------------------------------------------------------------
# Measured by the oracle

@dataclass(frozen=True)
class EditSettings:
    structure_level: int = 0       # t_s
    guidance_scale: float = 3.0    # w, on the content
    num_steps: int = 20


@dataclass
class EditPairs:
    """Held-out sources and, for each, a content image of another colour."""
    sources: object                  # ToyBatch of the source clips
    content_frames: torch.Tensor     # (B, 3, H, W) in [-1, 1]
    content_colours: list[str]
    content_captions: list[str]      # "a blue square": what the content image shows (the text edits' prompts)


def edit_pairs(n: int) -> EditPairs:
    """n (source clip, content image) pairs: source i is held-out clip i; its content image is the first frame
    of the next content clip whose object has another colour (each content clip used at most once)."""
    sources = toy_clips(n, HELD_OUT_SEED)
    candidates = toy_clips(4 * n, CONTENT_SEED)
    used, frames, colours, captions = set(), [], [], []
    for objects in sources.objects:
        pick = next(j for j, other in enumerate(candidates.objects)
                    if j not in used and other[0].colour != objects[0].colour)
        used.add(pick)
        frames.append(candidates.video[pick, :, 0])
        colours.append(candidates.objects[pick][0].colour)
        captions.append(candidates.captions[pick])
    return EditPairs(sources, torch.stack(frames), colours, captions)


@torch.no_grad()
def edit_clips(model: ToyGen1, depth: torch.Tensor, content_embeddings: torch.Tensor, *,
               settings: EditSettings = EditSettings(), seed: int = 0) -> torch.Tensor:
    """Edited clips (B, 3, T, 32, 32) in [-1, 1]: structure = ``depth`` blurred to t_s, content = the image
    embeddings (B, 64); the same noise for the same seed whatever the settings."""
    device = next(model.parameters()).device
    structure = blur_structure(depth, settings.structure_level).to(device)
    z_1 = torch.randn(depth.shape[0], 3, *depth.shape[2:], generator=torch.Generator().manual_seed(seed)).to(device)
    out = edit_video(model, structure, content_tokens(content_embeddings).to(device), TEXT_TO_IMAGE_SCHEDULE,
                     TEXT_TO_IMAGE_SCHEDULE.uniform_times(settings.num_steps), z_start=z_1,
                     guidance_scale=settings.guidance_scale)
    return out.clamp(-1, 1).cpu()


def object_pixels(video: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W) bool: the pixels the oracle does not read as background (object colours and unreadable ones)."""
    from minivdm.toyworld.oracle import BACKGROUND_LABEL, label_pixels

    return label_pixels((video.float() + 1) / 2) != BACKGROUND_LABEL


def mask_iou(edited: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """(B,) mean over frames of the IoU of the object pixels of the edit and of the source (both read the same
    way; a frame where neither shows an object counts as 1)."""
    a, b = object_pixels(edited), object_pixels(source)
    inter = (a & b).sum(dim=(2, 3)).float()
    union = (a | b).sum(dim=(2, 3)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean(dim=1)


def score_edits(edited: torch.Tensor, sources, target_colours: list[str]) -> dict[str, list]:
    """Per pair: structure kept (mask IoU with the source, the source's motion and shape read back), content
    taken (the target colour read back), one object, consistent (the oracle's temporal consistency)."""
    from minivdm.toyworld.oracle import read_video

    rows = {"iou": mask_iou(edited, sources.video).tolist(), "one_object": [], "motion_kept": [], "shape_kept": [],
            "target_colour": [], "source_colour": [], "consistent": []}
    for seen, objects, colour in zip(read_video(edited), sources.objects, target_colours):
        obj = seen[0] if len(seen) == 1 else None
        truth = objects[0]
        rows["one_object"].append(obj is not None)
        rows["motion_kept"].append(obj is not None and obj.motion == truth.motion)
        rows["shape_kept"].append(obj is not None and obj.shape == truth.shape)
        rows["target_colour"].append(obj is not None and obj.colour == colour)
        rows["source_colour"].append(obj is not None and obj.colour == truth.colour)
        rows["consistent"].append(obj is not None and obj.consistent)
    return rows


def summarise_edits(rows: dict) -> dict:
    """Shares over the pairs (95% Wilson intervals), the mean IoU and the share of pairs with IoU >= 0.9."""
    from minivdm.toy.text_to_image import wilson_interval

    n = len(rows["iou"])
    out = {"pairs": n, "mean_iou": sum(rows["iou"]) / n, "iou_at_least_0.9": sum(v >= 0.9 for v in rows["iou"]) / n}
    for key, values in rows.items():
        if key != "iou":
            out[key] = sum(values) / n
            out[key + "_interval"] = wilson_interval(sum(values), n)
    return out


def evaluate_edits(model: ToyGen1, pairs: EditPairs, *, settings: EditSettings = EditSettings(), prior=None,
                   batch_size: int = 25, seed: int = 0) -> dict:
    """Oracle figures of one edit per pair. Content from the content image (``prior`` None) or from its caption
    through ``prior`` (a text-driven edit)."""
    from minivdm.toy.clip import load_toy_clip_scorer

    scorer = load_toy_clip_scorer()
    if prior is None:
        embeddings = scorer.image_embeddings(pairs.content_frames)
    else:
        with torch.no_grad():
            embeddings = prior(scorer.text_embeddings(pairs.content_captions))
    start = time.perf_counter()
    depth = pairs.sources.depth_maps
    n = len(pairs.content_colours)
    videos = torch.cat([edit_clips(model, depth[i:i + batch_size], embeddings[i:i + batch_size], settings=settings,
                                   seed=seed + i) for i in range(0, n, batch_size)])
    return {"summary": summarise_edits(score_edits(videos, pairs.sources, pairs.content_colours)),
            "sampling_seconds": time.perf_counter() - start, "videos": videos}
