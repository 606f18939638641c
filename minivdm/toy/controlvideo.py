"""ControlVideo on the toy world: the toy ControlNet (chapter 7) on the frozen toy text-to-image model, never
trained on video, follows the edge maps of a held-out toy video with a prompt that changes the objects'
colours ("a red circle moving right" drawn as "a green circle"). The oracle measures structure (per-frame IoU
of each object with the control's), colour, temporal consistency and background flicker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from einops import rearrange

from minivdm.methods.controlvideo import controlvideo
from minivdm.toy.controlnet import ToyControlledTextToImage, control_ious
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE

HELD_OUT_SEED = 7007  # toy videos no model of the course was trained on


@dataclass(frozen=True)
class ToyControlVideoSettings:
    """One row of the comparison. ``smoother_steps`` index the ``num_steps`` DDIM steps from pure noise;
    ``clip_length`` turns the hierarchical sampler on."""

    attention: str = "all"
    smoother_steps: tuple[int, ...] = ()
    interpolation: str = "flow"
    clip_length: int | None = None
    num_frames: int = 8
    num_steps: int = 20
    guidance_scale: float = 3.0
    conditioning_scale: float = 1.0


SMOOTHER_STEPS = (8, 9)  # t = 0.6 and 0.55 of the 20 steps: the paper's {30, 31} of 50 DDIM timesteps, read from t = 1
COMPARISON = {
    "per-frame ControlNet": ToyControlVideoSettings(attention="frame"),
    "first-frame attention (Text2Video-Zero + ControlNet)": ToyControlVideoSettings(attention="first"),
    "fully cross-frame": ToyControlVideoSettings(attention="all"),
    "fully cross-frame + smoother": ToyControlVideoSettings(attention="all", smoother_steps=SMOOTHER_STEPS),
}
LONG = {  # 64 frames: every frame in one call against the hierarchical sampler (clips of 8 + 1 frames)
    "64 frames, fully cross-frame + smoother": ToyControlVideoSettings(smoother_steps=SMOOTHER_STEPS, num_frames=64),
    "64 frames, + hierarchical (clips of 8)": ToyControlVideoSettings(smoother_steps=SMOOTHER_STEPS, num_frames=64,
                                                                     clip_length=8),
}


def held_out_videos(n: int, num_frames: int = 8, seed: int = HELD_OUT_SEED):
    """n toy videos (a ``ToyBatch``) whose edge maps are the controls."""
    from minivdm.toyworld.world import ToyWorldConfig, generate

    return generate(n, seed, ToyWorldConfig(frames=num_frames, name=f"controlvideo{num_frames}"))


def recoloured(batch, seed: int = 0) -> list[list[tuple[str, str, str]]]:
    """For every video, its objects (colour, shape, motion) with new colours: each object a colour it did not
    have, the objects of a video still distinct (the prompt changes the look, the control keeps the structure)."""
    from minivdm.toyworld.oracle import COLOURS

    generator = torch.Generator().manual_seed(seed)
    out = []
    for objects in batch.objects:
        taken, new = {o.colour for o in objects}, []
        for obj in objects:
            choices = [c for c in COLOURS if c not in taken]
            colour = choices[int(torch.randint(len(choices), (1,), generator=generator))]
            taken.add(colour)
            new.append((colour, obj.shape, obj.motion))
        out.append(new)
    return out


def image_prompt(objects: list[tuple[str, str, str]]) -> str:
    """'a green circle and a red square': what the image model reads (no motion: the control moves them)."""
    return " and ".join(f"a {colour} {shape}" for colour, shape, _ in objects)


def video_caption(objects: list[tuple[str, str, str]]) -> str:
    """The caption the oracle judges the video against: the prompted colours with the control's motion."""
    return " and ".join(f"a {colour} {shape}" + (" standing still" if motion == "still" else f" moving {motion}")
                        for colour, shape, motion in objects)


@torch.no_grad()
def toy_controlvideo(model: ToyControlledTextToImage, tokenizer, prompts: list[str], controls: torch.Tensor, *,
                     settings: ToyControlVideoSettings = ToyControlVideoSettings(), seed: int = 0) -> torch.Tensor:
    """Videos (B, 3, N, 32, 32) in [-1, 1]: one per prompt, following ``controls`` (B, 1, N, 32, 32) in [0, 1].
    Every frame starts from its own noise; the same seed gives every row the same noise."""
    from minivdm.text import encode_captions

    if controls.ndim != 5 or controls.shape[0] != len(prompts) or controls.shape[2] != settings.num_frames:
        raise ValueError(f"controls must be (B, 1, N, 32, 32) with B = {len(prompts)} prompts and N = "
                         f"{settings.num_frames} frames, got {tuple(controls.shape)}")
    device = next(model.parameters()).device
    input_ids, _ = encode_captions(tokenizer, list(prompts))
    null_ids, _ = encode_captions(tokenizer, [""] * len(prompts))
    input_ids, null_ids, controls = input_ids.to(device), null_ids.to(device), controls.float().to(device)
    model.conditioning_scale = settings.conditioning_scale

    def model_fn(z: torch.Tensor, t: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        per_video = len(frames)
        ids = torch.cat([null_ids, input_ids]).repeat_interleave(per_video, dim=0)
        control = rearrange(controls[:, :, frames.to(device)], "b c f h w -> (b f) c h w")
        both = model(torch.cat([z, z]), torch.cat([t, t]), ids, torch.cat([control, control]))
        unconditional, conditional = both.chunk(2)
        return unconditional + settings.guidance_scale * (conditional - unconditional)

    z_T = torch.randn(len(prompts), 3, settings.num_frames, 32, 32, generator=torch.Generator().manual_seed(seed))
    times = TEXT_TO_IMAGE_SCHEDULE.uniform_times(settings.num_steps)
    return controlvideo(model_fn, z_T.to(device), TEXT_TO_IMAGE_SCHEDULE, times, attention=settings.attention,
                        attention_model=model, smoother_steps=settings.smoother_steps,
                        interpolation=settings.interpolation, clip_length=settings.clip_length,
                        prediction_type="v").clamp(-1, 1)


def frames_right(videos: torch.Tensor, objects: list[list[tuple[str, str, str]]]) -> float:
    """The share of single frames whose objects' colours and shapes are the prompted ones."""
    from minivdm.toyworld.oracle import score_videos

    frames = videos.shape[2]
    single = rearrange(videos, "b c f h w -> (b f) c 1 h w")
    return score_videos(single, [image_prompt(o) for o in objects for _ in range(frames)])["caption_accuracy"]


def evaluate_toy_controlvideo(model: ToyControlledTextToImage, tokenizer, batch, *,
                              settings: ToyControlVideoSettings = ToyControlVideoSettings(), batch_size: int = 8,
                              seed: int = 0, recolour_seed: int = 0) -> dict[str, float]:
    """Over a ``ToyBatch`` of held-out videos (controls: their edge maps; prompts: recoloured objects): mean
    per-frame object IoU and the share of (object, frame) pairs with IoU >= 0.9 (structure, and in the prompted
    colour: ``control_ious``), frames right (colour and shape per
    frame), the oracle's colour accuracy, caption accuracy (colour, shape, motion), temporal consistency and
    background flicker."""
    from minivdm.toyworld.oracle import score_videos

    if batch.video.shape[2] != settings.num_frames:
        raise ValueError(f"the videos have {batch.video.shape[2]} frames, the settings {settings.num_frames}")
    objects = recoloured(batch, recolour_seed)
    prompts = [image_prompt(o) for o in objects]
    controls = batch.edges.float()
    videos = torch.cat([toy_controlvideo(model, tokenizer, prompts[i:i + batch_size], controls[i:i + batch_size],
                                         settings=settings, seed=seed + i).cpu()
                        for i in range(0, len(prompts), batch_size)])
    ious = control_ious(videos, batch.masks, [[colour for colour, _, _ in o] for o in objects])
    structure, prompted = ious["structure"], ious["prompted"]
    scores = score_videos(videos, [video_caption(o) for o in objects])
    return {"mean_iou": structure.mean().item(), "iou_at_least_0.9": (structure >= 0.9).float().mean().item(),
            "mean_iou_prompted_colour": prompted.mean().item(),
            "iou_prompted_colour_at_least_0.9": (prompted >= 0.9).float().mean().item(),
            "frames_right": frames_right(videos, objects), "colour_accuracy": scores["colour_accuracy"],
            "caption_accuracy": scores["caption_accuracy"], "temporal_consistency": scores["temporal_consistency"],
            "background_flicker": scores["background_flicker"], "videos": len(prompts),
            "object_frames": len(structure), **colour_binding(prompted.view(-1, settings.num_frames))}


def colour_binding(prompted: torch.Tensor) -> dict[str, float]:
    """How each object's prompted colour sticks to it over the frames, from its per-frame IoU in that colour
    (objects, frames): the share of objects in their colour in every frame, in another colour in every frame (two
    objects' colours swapped for the whole video: consistent, but not as prompted), or changing colour between
    frames (the colours of two objects trading places from frame to frame: what makes a video flicker)."""
    bound = prompted >= 0.5
    every, none = bound.all(1), (~bound).all(1)
    return {"colour_bound_every_frame": every.float().mean().item(), "colour_bound_no_frame": none.float().mean().item(),
            "colour_changes_between_frames": (~every & ~none).float().mean().item()}


def settings_for(row: str) -> ToyControlVideoSettings:
    """The named row of ``COMPARISON`` or ``LONG``."""
    rows = {**COMPARISON, **LONG}
    if row not in rows:
        raise ValueError(f"row must be one of {sorted(rows)}, got {row!r}")
    return dataclasses.replace(rows[row])
