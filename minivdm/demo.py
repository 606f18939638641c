"""The main job on the shipped tiny models (``python -m minivdm demo``).

1. A toy-world video with its caption, written as .mp4 and .gif.
2. Chapter 1: the forward process on that video (z_t as t runs from 0 to 1), and the shipped
   v-prediction denoiser sampling new toy-world frames with DDIM: each written as .mp4 and .gif,
   with what the oracle reads in the samples printed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange

from minivdm.diffusion import add_noise, sample
from minivdm.io import write_video
from minivdm.toy.denoisers import CHAPTER1_SCHEDULE, load_image_denoiser
from minivdm.toyworld import ToyWorldConfig, generate
from minivdm.toyworld.oracle import read_video


def noising_video(video: torch.Tensor, steps: int = 24, seed: int = 0) -> torch.Tensor:
    """(C, T, H, W) -> (C, steps, H, W): frame 0 of the video at t = 0 .. 1, with one fixed eps."""
    first_frame = video[:, 0]
    t = torch.linspace(0, 1, steps)
    frames = first_frame.expand(steps, *first_frame.shape)
    noise = torch.randn(first_frame.shape, generator=torch.Generator().manual_seed(seed)).expand_as(frames)
    z_t, _ = add_noise(frames.contiguous(), t, CHAPTER1_SCHEDULE, noise=noise.contiguous())
    return rearrange(z_t, "t c h w -> c t h w")


def sampling_video(num_samples: int = 4, steps: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """DDIM with the shipped v-model. Returns (the samples (B, C, H, W), a video of the trajectory
    (C, steps + 1, H, B*W): the samples side by side, one frame per step)."""
    model = load_image_denoiser("v")
    z_1 = torch.randn(num_samples, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    trajectory = [z_1]
    samples = sample(model, z_1, CHAPTER1_SCHEDULE, CHAPTER1_SCHEDULE.uniform_times(steps), prediction_type="v",
                     progress=False, trajectory=trajectory)
    frames = torch.stack(trajectory, dim=2).clamp(-1, 1)  # (B, C, steps + 1, H, W)
    return samples, rearrange(frames, "b c t h w -> c t h (b w)")


def run_demo(out: str | Path = "outputs/demo", seed: int = 0) -> list[Path]:
    out = Path(out)
    batch = generate(1, seed=seed, config=ToyWorldConfig(frames=16))
    video = batch.video[0]
    print(f"toy-world sample: {batch.captions[0]!r}")
    written = []
    for suffix in ("mp4", "gif"):
        written.append(write_video(out / f"toyworld_sample.{suffix}", video, fps=8, scale=4))
        written.append(write_video(out / f"chapter01_noising.{suffix}", noising_video(video, seed=seed), fps=8, scale=4))
    samples, trajectory = sampling_video(seed=seed)
    for suffix in ("mp4", "gif"):
        written.append(write_video(out / f"chapter01_sampling.{suffix}", trajectory, fps=12, scale=4))
    seen = read_video(rearrange(samples, "b c h w -> b c 1 h w"))
    for index, objects in enumerate(seen):
        described = ", ".join(f"{o.colour} {o.shape}" for o in objects) or "nothing readable"
        print(f"chapter-1 sample {index}: the oracle sees {described}")
    return written
