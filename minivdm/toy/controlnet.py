"""Chapter 7's tiny model: a ControlNet on the frozen toy text-to-image model (chapter 2), with the toy world's
ground-truth edge maps as the control: "a red circle" drawn where the edges say.

Only the ControlNet trains (a copy of the toy U-Net's encoder, ``ControlNetModel.from_unet``); the image model
and its text encoder stay frozen, as in the paper. Saved as a diffusers-layout folder ``controlnet/`` whose
config.json holds, under ``_minivdm``, the command and the training figures.
"""

from __future__ import annotations

from pathlib import Path

import torch

from minivdm.diffusion import diffusion_loss
from minivdm.toy import DATA_DIR
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE, ToyTextToImage, load_text_to_image
from minivdm.toyworld import generate_images
from minivdm.train import TrainConfig, describe, train

TOY_CONTROLNET_DIR = DATA_DIR / "toy_controlnet"
TOY_CONTROLNET_BATCH_SIZE = 32
TOY_CONTROLNET_DATASET_SIZE = 20000
TOY_CONTROLNET_CAPTION_DROPOUT = 0.1  # the unconditional branch of classifier-free guidance sees the control too
# about 0.65 s a step on 2 CPU cores: 4500 steps are under 50 minutes. The cosine decay sharpens the objects'
# boundaries at the end (a one-pixel halo costs a small object a third of its IoU).
TOY_CONTROLNET_TRAIN = TrainConfig(steps=4500, learning_rate=3e-4, warmup_steps=50, decay="cosine", ema_decay=0.995,
                                   seed=0, checkpoint_every=250, log_every=50)


def edge_control(edges: torch.Tensor) -> torch.Tensor:
    """The toy world's edge maps (B, 1, [T,] H, W) bool -> control images (B, 1, H, W) float in [0, 1]
    (one frame: T must be 1 or absent)."""
    if edges.ndim == 5:
        if edges.shape[2] != 1:
            raise ValueError(f"edge maps of images must have T = 1, got {tuple(edges.shape)}; pass one frame")
        edges = edges[:, :, 0]
    if edges.ndim != 4 or edges.shape[1] != 1:
        raise ValueError(f"edge maps must be (B, 1, H, W) or (B, 1, 1, H, W), got {tuple(edges.shape)}")
    return edges.float()


class ToyControlledTextToImage(torch.nn.Module):
    """The frozen toy text-to-image model with a ControlNet: ``model(z_t, t, input_ids, control)`` predicts v."""

    def __init__(self, image_model: ToyTextToImage, controlnet, conditioning_scale: float = 1.0):
        super().__init__()
        self.image_model, self.controlnet, self.conditioning_scale = image_model, controlnet, conditioning_scale
        self.image_model.requires_grad_(False)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, input_ids: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        context = self.image_model.text_encoder(input_ids)[0]
        timesteps = t * 1000  # the toy models' continuous t in [0, 1], as a timestep in [0, 1000]
        down, mid = self.controlnet(z_t, timesteps, context, control, conditioning_scale=self.conditioning_scale)
        return self.image_model.unet(z_t, timesteps, context, down_block_additional_residuals=down,
                                     mid_block_additional_residual=mid)


def train_toy_controlnet(out: str | Path = TOY_CONTROLNET_DIR, *, config: TrainConfig = TOY_CONTROLNET_TRAIN,
                         dataset_size: int = TOY_CONTROLNET_DATASET_SIZE, checkpoint_dir: str | Path | None = None,
                         image_model: str | Path | None = None, command: str = "",
                         max_minutes: float | None = None) -> Path:
    """Train the toy ControlNet on the frozen image model; write ``out/controlnet/`` (diffusers layout)."""
    from minivdm.io.checkpoints import save_component
    from minivdm.models.controlnet import ControlNetModel
    from minivdm.text import encode_captions

    torch.manual_seed(config.seed)
    base, tokenizer = load_text_to_image(image_model) if image_model is not None else load_text_to_image()
    controlnet = ControlNetModel.from_unet(base.unet, conditioning_channels=1, conditioning_embedding_out_channels=(16,))
    model = ToyControlledTextToImage(base, controlnet)
    data = generate_images(dataset_size, seed=config.seed + 100)  # not the image model's training draws
    controls = edge_control(data.edges)
    input_ids, _ = encode_captions(tokenizer, data.captions)
    empty_ids, _ = encode_captions(tokenizer, [""])

    def next_batch(step: int, generator: torch.Generator):
        index = torch.randint(len(data.images), (TOY_CONTROLNET_BATCH_SIZE,), generator=generator)
        ids = input_ids[index].clone()
        ids[torch.rand(len(index), generator=generator) < TOY_CONTROLNET_CAPTION_DROPOUT] = empty_ids
        return data.images[index], ids, controls[index]

    def loss_fn(model: ToyControlledTextToImage, batch, generator: torch.Generator) -> torch.Tensor:
        images, ids, control = batch
        return diffusion_loss(lambda z_t, t: model(z_t, t, ids, control), images, TEXT_TO_IMAGE_SCHEDULE, "v",
                              generator=generator)

    described = {"recipe": "toy-controlnet", "dataset_size": dataset_size, "control": "edges",
                 "image_model": str(Path(image_model).resolve()) if image_model is not None else "shipped"}
    result = train(model, next_batch, loss_fn, config, checkpoint_dir, run_description=described,
                   max_seconds=None if max_minutes is None else 60 * max_minutes)
    out = Path(out)
    if not result.is_main_process:
        return out
    metadata = {"command": command, "train_config": describe(config), "train_seconds": round(result.seconds),
                "steps": result.steps_done, "control": "edges (toy world ground truth, 1 channel in [0, 1])",
                "final_loss": result.losses[-1] if result.losses else None}
    save_component(result.ema_model.controlnet, out / "controlnet",
                   {**result.ema_model.controlnet.config.to_diffusers(), "_minivdm": metadata})
    return out


def load_toy_controlnet(folder: str | Path = TOY_CONTROLNET_DIR, device: str | torch.device = "cpu",
                        image_model: str | Path | None = None):
    """(model, tokenizer): the shipped toy text-to-image model with the toy ControlNet of ``folder``."""
    from minivdm.models.controlnet import ControlNetModel

    folder = Path(folder)
    if not (folder / "controlnet").is_dir():
        raise FileNotFoundError(f"no toy ControlNet at {folder}; train one with "
                                f"`python -m minivdm train-toy-controlnet --out {folder}`")
    base, tokenizer = load_text_to_image(image_model) if image_model is not None else load_text_to_image()
    model = ToyControlledTextToImage(base, ControlNetModel.from_pretrained(folder, "controlnet"))
    return model.to(device).eval(), tokenizer


@torch.no_grad()
def sample_toy_controlnet(model: ToyControlledTextToImage, tokenizer, prompts: list[str], controls: torch.Tensor, *,
                          guidance_scale: float = 3.0, num_steps: int = 30, seed: int = 0) -> torch.Tensor:
    """Images (B, 3, 32, 32) in [-1, 1] for prompts drawn where ``controls`` (B, 1, 32, 32) say: DDIM with
    classifier-free guidance, the ControlNet in both branches (the control is not what guidance removes)."""
    from minivdm.diffusion import guided_model, sample
    from minivdm.text import encode_captions

    if controls.shape[0] != len(prompts):
        raise ValueError(f"need one control per prompt, got {len(prompts)} prompts and controls {tuple(controls.shape)}")
    device = next(model.parameters()).device
    input_ids, _ = encode_captions(tokenizer, list(prompts))
    null_ids, _ = encode_captions(tokenizer, [""] * len(prompts))
    both_branches = torch.cat([controls, controls]).to(device)  # guided_model's batch is [unconditional; conditional]
    model_fn = guided_model(lambda z_t, t, ids: model(z_t, t, ids, both_branches), input_ids.to(device),
                            null_ids.to(device), guidance_scale)
    z_1 = torch.randn(len(prompts), 3, 32, 32, generator=torch.Generator().manual_seed(seed)).to(device)
    return sample(model_fn, z_1, TEXT_TO_IMAGE_SCHEDULE, TEXT_TO_IMAGE_SCHEDULE.uniform_times(num_steps),
                  prediction_type="v", progress=False).clamp(-1, 1)


def control_ious(videos: torch.Tensor, masks: torch.Tensor, colours: list[list[str]]) -> dict[str, torch.Tensor]:
    """Two IoUs per (object, frame) of generated ``videos`` (B, 3, T, H, W) in [-1, 1] against the control's object
    masks (B, K, T, H, W) (the toy world's ground truth), objects prompted in ``colours`` (per video, in mask order):

    * "structure": the object drawn where the control put it, whatever its colour: the palette colour the oracle
      reads most inside the mask, its pixels against the mask;
    * "prompted": the pixels the oracle reads in the object's *prompted* colour against the mask: the structure
      and the binding of the colour to the right shape (two objects drawn in each other's colours score 0 here,
      and about 1 in "structure").

    Frames where an object is absent from the control (its mask empty) count 1 when nothing of it is drawn."""
    from minivdm.toyworld.oracle import COLOURS, label_pixels

    labels = torch.cat([label_pixels(chunk) for chunk in ((videos.cpu().float() + 1) / 2).split(16)])  # (B, T, H, W)
    structure, prompted = [], []
    for b, video_colours in enumerate(colours):
        for k, colour in enumerate(video_colours):
            truth = masks[b, k].cpu()                                                   # (T, H, W)
            inside = torch.stack([((labels[b] == c) & truth).sum((1, 2)) for c in range(len(COLOURS))])  # (colours, T)
            drawn = labels[b] == inside.argmax(0)[:, None, None]                       # the colour most inside, per frame
            for made, out in ((drawn, structure), (labels[b] == COLOURS.index(colour), prompted)):
                union = (truth | made).sum((1, 2)).float()
                out.append(torch.where(union > 0, (truth & made).sum((1, 2)).float() / union.clamp(min=1), 1.0))
    return {"structure": torch.cat(structure), "prompted": torch.cat(prompted)}


def object_ious(images: torch.Tensor, batch) -> dict[str, torch.Tensor]:
    """``control_ious`` of images (B, 3, H, W) against a toy ``batch`` of images, every object in its own colour."""
    return control_ious(images[:, :, None], batch.masks, [[o.colour for o in objects] for objects in batch.objects])


def evaluate_toy_controlnet(model: ToyControlledTextToImage, tokenizer, batch, *, batch_size: int = 64,
                            **sampling) -> dict[str, float]:
    """Over a toy ``batch`` of held-out images: their edge maps as controls, their captions as prompts. Returns the
    mean object IoU and the share of objects with IoU >= 0.9 (structure, and in the prompted colour: see
    ``control_ious``), and the oracle's colour / shape / caption accuracy."""
    from minivdm.toyworld.oracle import score_videos

    controls = edge_control(batch.edges)
    images = torch.cat([sample_toy_controlnet(model, tokenizer, batch.captions[i:i + batch_size],
                                              controls[i:i + batch_size], seed=i, **sampling).cpu()
                        for i in range(0, len(batch.captions), batch_size)])
    ious = object_ious(images, batch)
    scores = score_videos(images[:, :, None], list(batch.captions))
    structure, prompted = ious["structure"], ious["prompted"]
    return {"mean_iou": structure.mean().item(), "iou_at_least_0.9": (structure >= 0.9).float().mean().item(),
            "mean_iou_prompted_colour": prompted.mean().item(),
            "iou_prompted_colour_at_least_0.9": (prompted >= 0.9).float().mean().item(),
            "objects": len(structure), "colour_accuracy": scores["colour_accuracy"],
            "shape_accuracy": scores["shape_accuracy"], "caption_accuracy": scores["caption_accuracy"]}
