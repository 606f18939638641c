"""Chapter 2's tiny model: the toy world's text-to-image model ("Stable Diffusion in 300 lines"), the
SD-layout U-Net in its tiny config, in pixel space, with the toy CLIP text encoder trained jointly.

Saved as a diffusers-layout folder (``unet/``, ``text_encoder/``, ``tokenizer/``); ``unet/config.json``
holds, under ``_minivdm``, the command of every training stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from minivdm.diffusion import diffusion_loss
from minivdm.toy import DATA_DIR
from minivdm.toy.denoisers import CHAPTER1_DATASET_SIZE, CHAPTER1_SCHEDULE
from minivdm.toyworld import generate_images
from minivdm.train import TrainConfig, describe, train

TEXT_TO_IMAGE_DIR = DATA_DIR / "toy_text_to_image"
TEXT_TO_IMAGE_SCHEDULE = CHAPTER1_SCHEDULE
TEXT_TO_IMAGE_BATCH_SIZE = 32
TEXT_TO_IMAGE_CAPTION_DROPOUT = 0.1  # the unconditional branch classifier-free guidance needs
TEXT_TO_IMAGE_TRAIN = TrainConfig(steps=8000, learning_rate=1e-3, warmup_steps=100, ema_decay=0.995, seed=0,
                                  checkpoint_every=250, log_every=50)
# The second stage: start from the first stage's weights and anneal the learning rate to zero, on a
# fresh draw of the toy world (seed 1).
TEXT_TO_IMAGE_ANNEAL = TrainConfig(steps=3000, learning_rate=5e-4, warmup_steps=100, ema_decay=0.995, seed=1,
                                   checkpoint_every=250, log_every=50, decay="cosine")


class ToyTextToImage(torch.nn.Module):
    """The U-Net and the text encoder, trained together; ``model(z_t, t, input_ids)`` predicts v."""

    def __init__(self, unet, text_encoder):
        super().__init__()
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        context = self.text_encoder(input_ids)[0]
        # continuous t in [0, 1] is fed as a (fractional) timestep in [0, 1000], the range of the embedding
        return self.unet(z_t, t * 1000, context)


def train_text_to_image(out: str | Path = TEXT_TO_IMAGE_DIR, *, config: TrainConfig = TEXT_TO_IMAGE_TRAIN,
                        dataset_size: int = CHAPTER1_DATASET_SIZE, checkpoint_dir: str | Path | None = None,
                        init_from: str | Path | None = None, command: str = "") -> Path:
    """Train the toy text-to-image model and write it as a diffusers-layout folder (unet/, text_encoder/, tokenizer/).

    ``init_from`` starts from the weights of a folder this function wrote (the annealing stage).
    """
    from minivdm.configs.stable_diffusion import TINY
    from minivdm.io.checkpoints import save_component
    from minivdm.models.unet_2d_condition import UNet2DConditionModel
    from minivdm.text import build_toy_text_encoder, build_toy_tokenizer, encode_captions, save_toy_text_stack

    torch.manual_seed(config.seed)
    tokenizer = build_toy_tokenizer()
    model = ToyTextToImage(UNet2DConditionModel(TINY), build_toy_text_encoder(seed=config.seed))
    if init_from is not None:
        start, _ = load_text_to_image(init_from)
        model.load_state_dict(start.state_dict(), strict=True)
        model.train()
    data = generate_images(dataset_size, seed=config.seed)
    input_ids, _ = encode_captions(tokenizer, data.captions)
    empty_ids, _ = encode_captions(tokenizer, [""])

    def next_batch(step: int, generator: torch.Generator):
        index = torch.randint(len(data.images), (TEXT_TO_IMAGE_BATCH_SIZE,), generator=generator)
        ids = input_ids[index].clone()
        dropped = torch.rand(len(index), generator=generator) < TEXT_TO_IMAGE_CAPTION_DROPOUT
        ids[dropped] = empty_ids
        return data.images[index], ids

    def loss_fn(model: ToyTextToImage, batch, generator: torch.Generator) -> torch.Tensor:
        images, ids = batch
        return diffusion_loss(lambda z_t, t: model(z_t, t, ids), images, TEXT_TO_IMAGE_SCHEDULE, "v", generator=generator)

    described = {"recipe": "toy-text-to-image", "dataset_size": dataset_size,
                 "init_from": None if init_from is None else str(Path(init_from).resolve())}
    result = train(model, next_batch, loss_fn, config, checkpoint_dir, run_description=described)
    out = Path(out)
    if not result.is_main_process:
        return out
    trained = result.ema_model
    unet_config = {**TINY.to_diffusers(), "_minivdm": {"command": command, "train_config": describe(config),
                                                       "train_seconds": round(result.seconds), "prediction_type": "v",
                                                       "schedule": repr(TEXT_TO_IMAGE_SCHEDULE),
                                                       "init_from": _earlier_stages(init_from),
                                                       "final_loss": result.losses[-1] if result.losses else None}}
    save_component(trained.unet, out / "unet", unet_config)
    save_toy_text_stack(out, tokenizer, trained.text_encoder)
    return out


def _earlier_stages(folder: str | Path | None) -> list[str]:
    """The commands that made the toy text-to-image model in ``folder``, oldest first (a later stage's provenance)."""
    if folder is None:
        return []
    recorded = json.loads((Path(folder) / "unet" / "config.json").read_text())["_minivdm"]
    before = recorded.get("init_from") or []
    return [*([before] if isinstance(before, str) else before), recorded["command"]]


def load_text_to_image(folder: str | Path = TEXT_TO_IMAGE_DIR, device: str | torch.device = "cpu"):
    """(model, tokenizer) of the shipped toy text-to-image model; ``model(z_t, t, input_ids)`` predicts v."""
    from minivdm.models.unet_2d_condition import UNet2DConditionModel
    from minivdm.text import load_toy_text_stack

    folder = Path(folder)
    if not (folder / "unet").is_dir():
        raise FileNotFoundError(f"no toy text-to-image model at {folder}; train one with "
                                f"`python -m minivdm train-text-to-image --out {folder}`")
    tokenizer, text_encoder = load_toy_text_stack(folder)
    model = ToyTextToImage(UNet2DConditionModel.from_pretrained(folder, "unet"), text_encoder)
    return model.to(device).eval(), tokenizer


@torch.no_grad()
def sample_toy_images(model: ToyTextToImage, tokenizer, prompts: list[str], *, guidance_scale: float = 3.0,
                      num_steps: int = 30, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Images (B, 3, 32, 32) in [-1, 1] for toy-world prompts: our DDIM with classifier-free guidance."""
    from minivdm.diffusion import guided_model, sample
    from minivdm.text import encode_captions

    input_ids, _ = encode_captions(tokenizer, list(prompts))
    null_ids, _ = encode_captions(tokenizer, [""] * len(prompts))
    device = next(model.parameters()).device
    model_fn = guided_model(model, input_ids.to(device), null_ids.to(device), guidance_scale)
    z_1 = torch.randn(len(prompts), 3, 32, 32, generator=torch.Generator().manual_seed(seed)).to(device)
    x_0 = sample(model_fn, z_1, TEXT_TO_IMAGE_SCHEDULE, TEXT_TO_IMAGE_SCHEDULE.uniform_times(num_steps),
                 prediction_type="v", progress=progress)
    return x_0.clamp(-1, 1)


def evaluate_text_to_image(model: ToyTextToImage, tokenizer, prompts: list[str], *, batch_size: int = 64,
                           **sampling) -> dict[str, float]:
    """Oracle scores of one sample per prompt: caption_accuracy = every prompted object's colour and shape seen."""
    from minivdm.toyworld.oracle import score_videos

    images = torch.cat([sample_toy_images(model, tokenizer, prompts[i:i + batch_size], **sampling)
                        for i in range(0, len(prompts), batch_size)])
    return score_videos(images[:, :, None].cpu(), prompts)


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% for z = 1.96) of a success rate hits / n: how far a measured accuracy
    can be from the true one by chance alone (48 prompts at 0.9: 0.78..0.96)."""
    if n <= 0 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n and n > 0, got hits={hits}, n={n}")
    p = hits / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * (p * (1 - p) / n + z**2 / (4 * n**2)) ** 0.5 / (1 + z**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def guidance_sweep(model: ToyTextToImage, tokenizer, prompts: list[str], scales: list[float], *,
                   diversity_prompts: int = 6, draws: int = 8, num_steps: int = 20, seed: int = 0) -> list[dict]:
    """What the guidance scale w changes, measured: for each w, caption accuracy over ``prompts`` (one sample
    each, with its 95% Wilson interval) and diversity, how far apart ``draws`` samples of the same prompt put
    the object: the spread (root of the summed variances of y and x, in pixels) of the centre of the first
    object the oracle reads, averaged over the first ``diversity_prompts`` prompts. Every w sees the same noises."""
    from minivdm.toyworld.oracle import read_video, score_videos

    results = []
    for w in scales:
        images = sample_toy_images(model, tokenizer, prompts, guidance_scale=w, num_steps=num_steps, seed=seed)
        hits = round(score_videos(images[:, :, None].cpu(), prompts)["caption_accuracy"] * len(prompts))
        spreads = []
        for index, prompt in enumerate(prompts[:diversity_prompts]):
            samples = sample_toy_images(model, tokenizer, [prompt] * draws, guidance_scale=w, num_steps=num_steps,
                                        seed=seed + 1 + index)
            centres = [objects[0].trajectory[0] for objects in read_video(samples[:, :, None].cpu()) if objects]
            if len(centres) > 1:
                spreads.append(torch.stack(centres).std(dim=0).norm())
        results.append({"guidance_scale": w, "caption_accuracy": hits / len(prompts), "prompts": len(prompts),
                        "interval": wilson_interval(hits, len(prompts)), "diversity_draws": (len(spreads), draws),
                        "diversity": float(torch.stack(spreads).mean()) if spreads else float("nan")})
    return results
