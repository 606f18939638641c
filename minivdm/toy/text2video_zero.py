"""Text2Video-Zero on the toy world: the shipped toy text-to-image model (chapter 2), never trained on
video, makes 32 x 32 videos in pixel space; the oracle measures them (ablation: which mechanism buys what).

A prompt is an image caption ("a red circle") and a direction; the video is judged against the caption
with that motion ("a red circle moving right"): colour and shape in every frame, the oracle's motion
direction, and temporal consistency (identity, size, colour, path stable over the frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minivdm.methods.text2video_zero import frame_shifts, guided_any_batch, text2video_zero, warp_masks
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE, ToyTextToImage

TOY_DIRECTIONS = ("right", "left", "up", "down")


@dataclass(frozen=True)
class ToyT2VZSettings:
    """One row of the ablation. ``strength`` is lambda in pixels per frame; ``start_index`` (where x_T^1 is taken,
    the joint denoising's start T) and ``delta_t`` (T -> T') count DDIM steps from pure noise. Without the motion
    dynamics every frame starts from its own pure noise (start_index 0: that is what x_T is there).

    Why T is 10 of 25 steps (t = 0.6) and not pure noise: re-noising the warped x_{T'}^1 back to T keeps
    sqrt(abar_T) of it, and this pixel-space cosine schedule has sqrt(abar) = 5e-5 at t = 1, 0.13 at step 2 and
    0.59 at step 10. SD's T (diffusers' t1 = 941 of 1000) keeps about 0.1 of a latent that already fixes the
    layout; a 32 x 32 pixel image decides its layout later, so T must be later (the sweeps in
    bench/toy_text2video_zero.py measure it)."""

    motion: bool = True
    cross_frame: bool = True
    smoothing: bool = False
    strength: float = 1.0
    start_index: int = 10
    delta_t: int = 3
    num_frames: int = 8
    num_steps: int = 25
    guidance_scale: float = 3.0


ABLATION = {
    "independent frames": ToyT2VZSettings(motion=False, cross_frame=False),
    "motion dynamics only": ToyT2VZSettings(cross_frame=False),
    "cross-frame attention only": ToyT2VZSettings(motion=False),
    "both": ToyT2VZSettings(),
    "both + background smoothing": ToyT2VZSettings(smoothing=True),
}


def video_caption(image_caption: str, direction: str) -> str:
    """'a red circle and a blue square', 'left' -> every object 'moving left' (the motion is global)."""
    return " and ".join(f"{phrase.strip()} moving {direction}" for phrase in image_caption.split(" and "))


def foreground_masks(first_frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """M^k: the pixels of frame 1's objects (the oracle's labels: not background), warped by delta^k.
    first_frames (B, 3, H, W) in [-1, 1]; shifts (B, m, 2) -> (B, m, 1, H, W)."""
    from minivdm.toyworld.oracle import BACKGROUND_LABEL, label_pixels

    labels = label_pixels((first_frames[:, :, None].cpu().float() + 1) / 2)[:, 0]  # (B, H, W)
    return warp_masks((labels != BACKGROUND_LABEL).float()[:, None], shifts)


@torch.no_grad()
def toy_text2video_zero(model: ToyTextToImage, tokenizer, captions: list[str], directions: list[str], *,
                        settings: ToyT2VZSettings = ToyT2VZSettings(), seed: int = 0,
                        first_frames: list | None = None) -> torch.Tensor:
    """Videos (B, 3, m, 32, 32) in [-1, 1], one per (image caption, direction); the same seed gives every
    ablation row the same noise (x_T^1, and the noise frames 2..m start from or are re-noised with)."""
    from minivdm.text import encode_captions

    if len(captions) != len(directions):
        raise ValueError(f"need one direction per caption, got {len(captions)} captions and {len(directions)} directions")
    device = next(model.parameters()).device
    input_ids, _ = encode_captions(tokenizer, list(captions))
    null_ids, _ = encode_captions(tokenizer, [""] * len(captions))
    model_fn = guided_any_batch(model, input_ids.to(device), null_ids.to(device), settings.guidance_scale)
    generator = torch.Generator().manual_seed(seed)
    z_T = torch.randn(len(captions), 3, 32, 32, generator=generator).to(device)
    shifts = torch.stack([frame_shifts(settings.num_frames, direction, settings.strength) for direction in directions])
    times = TEXT_TO_IMAGE_SCHEDULE.uniform_times(settings.num_steps)

    def run(masks=None, capture=None):
        return text2video_zero(model_fn, z_T, TEXT_TO_IMAGE_SCHEDULE, times, num_frames=settings.num_frames,
                               shifts=shifts if settings.motion else None, delta_t=settings.delta_t,
                               start_index=settings.start_index if settings.motion else 0,
                               attention_model=model.unet if settings.cross_frame else None, prediction_type="v",
                               background_masks=masks, generator=torch.Generator().manual_seed(seed + 1),
                               first_frames=capture).clamp(-1, 1)

    videos = run(capture=first_frames)
    if settings.smoothing:  # the masks come from the video made without smoothing, then it is made again
        videos = run(foreground_masks(videos[:, :, 0], shifts).to(device))
    return videos


def evaluate_toy_text2video_zero(model: ToyTextToImage, tokenizer, captions: list[str], *,
                                 settings: ToyT2VZSettings = ToyT2VZSettings(), directions=TOY_DIRECTIONS,
                                 batch_size: int = 16, seed: int = 0) -> dict[str, float]:
    """Oracle scores over every (caption, direction): len(captions) x len(directions) videos."""
    from minivdm.toyworld.oracle import score_videos

    pairs = [(caption, direction) for caption in captions for direction in directions]
    videos = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        videos.append(toy_text2video_zero(model, tokenizer, [c for c, _ in chunk], [d for _, d in chunk],
                                          settings=settings, seed=seed + start).cpu())
    scores = score_videos(torch.cat(videos), [video_caption(c, d) for c, d in pairs])
    scores["videos"] = len(pairs)
    return scores

