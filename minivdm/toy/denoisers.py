"""Chapter 1's tiny models: two pixel-space denoisers of toy-world frames, identical but for what they
predict (eps or v), trained with the cosine schedule.

Each is one safetensors file whose metadata records the exact command, the model config and the
training config, so ``python -m minivdm train-denoiser ...`` reproduces it bit for bit on the same
machine and torch version.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from minivdm.diffusion import CosineSchedule, diffusion_loss
from minivdm.diffusion.parameterization import check_prediction_type
from minivdm.io.checkpoints import read_safetensors
from minivdm.models import PixelUNet, PixelUNetConfig
from minivdm.toy import DATA_DIR, read_metadata
from minivdm.toyworld import generate_images
from minivdm.train import TrainConfig, describe, save_weights, train

# Chapter 1: two denoisers of toy-world frames, identical but for what they predict.
CHAPTER1_SCHEDULE = CosineSchedule(logsnr_max=20.0, logsnr_min=-20.0)
CHAPTER1_DATASET_SIZE = 20_000
CHAPTER1_BATCH_SIZE = 32
CHAPTER1_TRAIN = TrainConfig(steps=3000, learning_rate=5e-4, warmup_steps=100, ema_decay=0.999, seed=0,
                             checkpoint_every=250, log_every=50)


def chapter1_path(prediction_type: str) -> Path:
    return DATA_DIR / "chapter01_denoisers" / f"chapter01_denoiser_{check_prediction_type(prediction_type)}.safetensors"


def train_image_denoiser(prediction_type: str, out: str | Path, *, config: TrainConfig = CHAPTER1_TRAIN,
                         batch_size: int = CHAPTER1_BATCH_SIZE, dataset_size: int = CHAPTER1_DATASET_SIZE,
                         checkpoint_dir: str | Path | None = None, command: str = "") -> Path:
    """Train a PixelUNet on toy-world frames with the chapter-1 recipe and save its EMA weights."""
    check_prediction_type(prediction_type)
    torch.manual_seed(config.seed)
    model = PixelUNet(PixelUNetConfig(name=f"chapter01-{prediction_type}", prediction_type=prediction_type))
    images = generate_images(dataset_size, seed=config.seed).images  # (N, 3, 32, 32) in [-1, 1]

    def next_batch(step: int, generator: torch.Generator) -> torch.Tensor:
        return images[torch.randint(len(images), (batch_size,), generator=generator)]

    def loss_fn(model: PixelUNet, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return diffusion_loss(model, batch, CHAPTER1_SCHEDULE, prediction_type, generator=generator)

    # the same network and TrainConfig for both targets: only this tells their checkpoints apart
    described = {"recipe": "chapter01-denoiser", "prediction_type": prediction_type, "batch_size": batch_size,
                 "dataset_size": dataset_size}
    result = train(model, next_batch, loss_fn, config, checkpoint_dir, run_description=described)
    if not result.is_main_process:
        return Path(out)
    metadata = {
        "command": command, "model_config": json.dumps(asdict(model.config)), "train_config": describe(config),
        "batch_size": str(batch_size), "dataset_size": str(dataset_size), "train_seconds": f"{result.seconds:.0f}",
        "final_loss": f"{result.losses[-1]:.5f}" if result.losses else "", "torch": torch.__version__,
    }
    return save_weights(result.ema_model, out, metadata)


def load_image_denoiser(prediction_type: str = "v", path: str | Path | None = None,
                        device: str | torch.device = "cpu") -> PixelUNet:
    """Load a shipped chapter-1 denoiser (or one you trained to ``path``)."""
    path = Path(path) if path is not None else chapter1_path(prediction_type)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with "
                                f"`python -m minivdm train-denoiser --prediction {prediction_type} --out {path}`")
    metadata = read_metadata(path)
    fields = json.loads(metadata["model_config"])
    fields["channels"] = tuple(fields["channels"])
    model = PixelUNet(PixelUNetConfig(**fields))
    model.load_state_dict(read_safetensors(path), strict=True)
    return model.to(device).eval()
