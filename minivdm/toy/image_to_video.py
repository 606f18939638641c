r"""Image-to-video on the toy world (chapter 12): Stable Video Diffusion's conditioning at toy size.

SVD (Blattmann et al., 2023, arXiv:2311.15127) turns a video model into an image-to-video model with three
conditions, and the toy model takes each of them the same way:

    the first frame x^0        concatenated to the noisy clip on EVERY frame:   input = [ z_t ; x^0, x^0, ..., x^0 ]
    a motion value  m           ("motion bucket": here the object's speed in px/frame, 0 for still)
    the noise augmentation s    (x^0 is given as x^0 + s * eps, so the model does not copy pixels blindly)

m and s are SVD's "added time ids": each is turned into sinusoidal features, an MLP maps them to one vector,
and that vector is ADDED to the time embedding, so every ResNet block (the temporal ones included) sees them:

    emb = MLP_t(sin(1000 t)) + MLP_add([ sin(100 m) ; sin(1000 s) ])

(100 m makes 0-2.5 px/frame span 0-250, the range of SVD's motion bucket ids.) SVD's CLIP image embedding by
cross-attention has no counterpart here: the toy text encoder's empty caption stands in for it, so the model
knows what the object is only from the concatenated frame.

The network is the toy Video LDM model (chapter 9: the frozen toy text-to-image model with alpha-merged temporal
layers, SVD's own architecture), its first convolution widened by 3 input channels (zero weights, so it starts
as the video model) and the added-time-id MLP (last layer zero: it starts with no effect). Trained: the
temporal layers, conv_in and the MLP; the image model is frozen. With probability 0.1 the first frame is
replaced by zeros, the unconditional branch classifier-free guidance needs; at sampling the guidance scale
rises over the frames, from min_guidance on frame 0 to max_guidance on the last (SVD's ramp: the first frames
are pinned by the image anyway, the last ones need the push).

Training clips come from the toy world at several speeds; the model is told each clip's real speed (SVD
computes its motion bucket from the clip's optical flow the same way: a measured property of the training
clip). Measured (``evaluate_toy_image_to_video``) on held-out first frames with a requested speed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from minivdm.io.checkpoints import write_safetensors
from minivdm.toy import DATA_DIR, load_trained_layers, read_metadata
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE
from minivdm.train import TrainConfig, describe, train
from minivdm.validation import check_video

CLIP_FRAMES = 8
SPEED_LEVELS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5)  # px/frame asked of the toy world (clipped by room)
MAX_SPEED = 3.0  # the model is refused anything faster: it never saw it
MAX_NOISE_AUG = 0.2
SPEED_FEATURE_SCALE = 100.0  # speed (px/frame) -> a motion-bucket-like number 0-250
NOISE_AUG_FEATURE_SCALE = 1000.0
FIRST_FRAME_DROPOUT = 0.1  # the unconditional branch of classifier-free guidance
NOISE_AUG_PROBABILITY = 0.5  # half the clips see a clean first frame, half one with s ~ U(0, MAX_NOISE_AUG)
I2V_DATASET_SIZE = 6300  # 700 clips at each speed level
I2V_BATCH_SIZE = 8
HELD_OUT_SEED = 9227
EVALUATION_SPEEDS = (0.5, 1.0, 1.5, 2.0)
CONDITIONING_LAYERS = ("unet.conv_in.", "add_embedding.")  # the layers that read the first frame and the speed
SVD_LOG_SIGMA = (0.7, 1.6)  # SVD's training noise, log sigma ~ N(0.7, 1.6^2): shifted to more noise than images'
I2V_TRAIN = TrainConfig(steps=4000, learning_rate=1e-3, warmup_steps=100, ema_decay=0.995, seed=0,
                        checkpoint_every=100, log_every=50)
WEIGHTS_FILE = "image_to_video.safetensors"
TOY_IMAGE_TO_VIDEO_DIR = DATA_DIR / "toy_image_to_video"
BASE_DIR = DATA_DIR / "toy_video_ldm"


def clip_speed(objects) -> float:
    """The speed (px/frame) a clip shows: its single object's, 0 when it stands still."""
    (obj,) = objects
    return 0.0 if obj.motion == "still" else float(obj.speed)


def clips(n: int, seed: int):
    """(video (n, 3, 8, 32, 32), speeds (n,), objects): single-object toy clips, an equal share asked at each
    speed level (the toy world slows an object down when the trip would leave the frame; ``speeds`` are real)."""
    from minivdm.toyworld import generate
    from minivdm.toyworld.world import ToyWorldConfig

    per_level = -(-n // len(SPEED_LEVELS))
    videos, objects = [], []
    for index, level in enumerate(SPEED_LEVELS):
        config = ToyWorldConfig(frames=CLIP_FRAMES, max_objects=1, speed=level, name=f"i2v{level}")
        batch = generate(per_level, seed=seed * 1000 + index, config=config)
        videos.append(batch.video)
        objects.extend(batch.objects)
    order = torch.randperm(len(objects), generator=torch.Generator().manual_seed(seed))[:n]
    video = torch.cat(videos)[order]
    objects = [objects[i] for i in order.tolist()]
    return video, torch.tensor([clip_speed(o) for o in objects]), objects


class ToyImageToVideo(nn.Module):
    """``model(z_t, t, first_frame, speed, noise_aug)`` -> v (B, 3, T, H, W); t continuous in [0, 1],
    first_frame (B, 3, H, W) (zeros: the unconditional branch), speed (B,) px/frame, noise_aug (B,) the s the
    first frame was augmented with."""

    def __init__(self, unet, context: torch.Tensor):
        super().__init__()
        from minivdm.nn.embeddings import TimestepEmbedding

        channels = unet.config.block_out_channels[0]
        if unet.config.in_channels != 2 * unet.config.out_channels:
            raise ValueError(f"the image-to-video U-Net takes [z_t ; x^0]: in_channels must be 2 * out_channels = "
                             f"{2 * unet.config.out_channels}, got {unet.config.in_channels}")
        self.unet = unet
        self.add_embedding = TimestepEmbedding(2 * channels, 4 * channels)
        self.register_buffer("context", context.detach().clone(), persistent=False)  # the empty caption (1, L, D)

    def zero_init_add_embedding(self) -> None:
        nn.init.zeros_(self.add_embedding.linear_2.weight)
        nn.init.zeros_(self.add_embedding.linear_2.bias)

    def added_embedding(self, speed: torch.Tensor, noise_aug: torch.Tensor) -> torch.Tensor:
        from minivdm.nn.embeddings import timestep_embedding

        channels = self.add_embedding.linear_1.in_features // 2
        features = torch.cat([timestep_embedding(speed * SPEED_FEATURE_SCALE, channels),
                              timestep_embedding(noise_aug * NOISE_AUG_FEATURE_SCALE, channels)], dim=-1)
        return self.add_embedding(features.to(self.add_embedding.linear_1.weight.dtype))

    def forward(self, z_t, t, first_frame, speed, noise_aug):
        check_video(z_t, "z_t")
        batch, _, num_frames = z_t.shape[:3]
        if first_frame.ndim != 4 or tuple(first_frame.shape) != (batch, z_t.shape[1], *z_t.shape[3:]):
            raise ValueError(f"first_frame must be (B, C, H, W) = {(batch, z_t.shape[1], *z_t.shape[3:])}, "
                             f"got {tuple(first_frame.shape)}")
        image = first_frame[:, :, None].expand(-1, -1, num_frames, -1, -1)  # the same frame beside every frame
        added = self.added_embedding(speed.reshape(batch), noise_aug.reshape(batch))
        return self.unet(torch.cat([z_t, image], dim=1), t * 1000, self.context.expand(batch, -1, -1),
                         added_embedding=added)


def _is_trained(name: str, unet) -> bool:
    return unet.is_new(name) or name.startswith("conv_in.")


def build_model(temporal_layers: str | Path | None = BASE_DIR) -> ToyImageToVideo:
    """The toy Video LDM model in ``temporal_layers`` (None: freshly inflated from the toy image model), widened
    for the first frame, with a fresh added-time-id MLP whose output starts at zero."""
    from minivdm.models.unet_2d_condition import widen_conv_in
    from minivdm.text import encode_captions
    from minivdm.toy.temporal_layers import inflate, load_toy_temporal_layers
    from minivdm.toy.text_to_image import load_text_to_image

    if temporal_layers is None:
        image, tokenizer = load_text_to_image()
        unet, text_encoder = inflate(image.unet, "video-ldm"), image.text_encoder
    else:
        video, tokenizer, metadata = load_toy_temporal_layers(temporal_layers)
        if metadata.get("design") != "video-ldm":
            raise ValueError(f"the toy image-to-video model starts from Video LDM's alpha-merged layers; "
                             f"{temporal_layers} holds {metadata.get('design')!r} layers")
        unet, text_encoder = video.unet, video.text_encoder
    empty, _ = encode_captions(tokenizer, [""])
    with torch.no_grad():
        context = text_encoder(empty)[0]
    widened = widen_conv_in(unet, unet.config.out_channels, merge_factor=unet.merge_factor)
    model = ToyImageToVideo(widened, context)
    model.zero_init_add_embedding()
    return model


def trainable_names(model: ToyImageToVideo) -> list[str]:
    return [name for name, _ in model.named_parameters()
            if name.startswith("add_embedding.") or (name.startswith("unet.")
                                                     and _is_trained(name.removeprefix("unet."), model.unet))]


def augment_first_frame(first_frame: torch.Tensor, noise_aug: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x^0 + s * eps, one s per clip."""
    return first_frame + noise_aug.reshape(-1, 1, 1, 1) * noise


def times_from_log_normal_sigma(u: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Training times t whose noise follows EDM's log-normal: log sigma ~ N(mean, std^2), with sigma the EDM noise
    level sigma_t / alpha_t of the toy's cosine schedule (data in [-1, 1], as EDM's sigma_data = 0.5 assumes).
    ``u`` (B,) standard normal draws. The cosine schedule is phi_t = a t + b with tan(phi_t) = sigma_t / alpha_t,
    so t = (arctan(sigma) - b) / a, clipped to the schedule's [0, 1]."""
    from minivdm.diffusion.schedules import CosineSchedule

    if not isinstance(TEXT_TO_IMAGE_SCHEDULE, CosineSchedule):
        raise TypeError(f"times_from_log_normal_sigma inverts a cosine schedule, got {TEXT_TO_IMAGE_SCHEDULE!r}")
    sigma = torch.exp(mean + std * u)
    phi_0, phi_1 = TEXT_TO_IMAGE_SCHEDULE.phi(0.0), TEXT_TO_IMAGE_SCHEDULE.phi(1.0)
    return ((torch.atan(sigma) - phi_0) / (phi_1 - phi_0)).clamp(0.0, 1.0)


def with_conditioning_lr_factor(config: TrainConfig, factor: float) -> TrainConfig:
    """``config`` with the layers that read the first frame and the speed (``CONDITIONING_LAYERS``) learning
    ``factor`` times faster than the temporal layers."""
    from dataclasses import replace

    return replace(config, lr_multipliers=tuple((part, factor) for part in CONDITIONING_LAYERS))


def train_toy_image_to_video(out: str | Path, *, temporal_layers: str | Path | None = BASE_DIR,
                             config: TrainConfig = I2V_TRAIN, dataset_size: int = I2V_DATASET_SIZE,
                             batch_size: int = I2V_BATCH_SIZE, log_sigma: tuple[float, float] | None = None,
                             checkpoint_dir: str | Path | None = None, max_minutes: float | None = None,
                             command: str = "", device: str = "cpu", progress: bool = True) -> Path:
    """Train the toy image-to-video model and write ``out/image_to_video.safetensors`` (the trained layers:
    temporal layers, conv_in, the added-time-id MLP) with the command and training figures in its metadata.
    ``log_sigma`` = (mean, std): draw the training noise as SVD does (``SVD_LOG_SIGMA``), log sigma ~ N(mean,
    std^2); None: t uniform in [0, 1], as the toy models before it."""
    from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for
    from minivdm.diffusion.parameterization import training_target

    torch.manual_seed(config.seed)
    model = build_model(temporal_layers)
    trained = set(trainable_names(model))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trained)
    video, speeds, _ = clips(dataset_size, config.seed)

    def next_batch(step: int, generator: torch.Generator):
        pick = torch.randint(dataset_size, (batch_size,), generator=generator)
        x = video[pick]
        dropped = torch.rand(batch_size, generator=generator) < FIRST_FRAME_DROPOUT
        augmented = torch.rand(batch_size, generator=generator) < NOISE_AUG_PROBABILITY
        noise_aug = torch.where(augmented, MAX_NOISE_AUG * torch.rand(batch_size, generator=generator), 0.0)
        first = augment_first_frame(x[:, :, 0], noise_aug, torch.randn(x[:, :, 0].shape, generator=generator))
        first = torch.where(dropped[:, None, None, None], 0.0, first)
        if log_sigma is None:
            t = torch.rand(batch_size, generator=generator)
        else:
            t = times_from_log_normal_sigma(torch.randn(batch_size, generator=generator), *log_sigma)
        return x, first, speeds[pick], noise_aug, t, torch.randn(x.shape, generator=generator)

    def loss_fn(model, batch, generator: torch.Generator) -> torch.Tensor:
        x, first, speed, noise_aug, t, noise = batch
        z_t, eps = add_noise(x, t, TEXT_TO_IMAGE_SCHEDULE, noise=noise)
        alpha, sigma = alpha_sigma_for(TEXT_TO_IMAGE_SCHEDULE, t, x)
        prediction = model(z_t, t, first, speed, noise_aug)
        return torch.nn.functional.mse_loss(prediction, training_target(x, eps, alpha, sigma, "v"))

    described = {"recipe": "toy-image-to-video", "dataset_size": dataset_size, "batch_size": batch_size,
                 "temporal_layers": None if temporal_layers is None else str(Path(temporal_layers).resolve()),
                 "speed_levels": list(SPEED_LEVELS), "log_sigma": log_sigma}
    result = train(model, next_batch, loss_fn, config, checkpoint_dir, run_description=described, device=device,
                   progress=progress, max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    ema = result.ema_model
    state = {name: p.detach().contiguous().cpu() for name, p in ema.named_parameters() if name in trained}
    metadata = {"command": command, "train_config": describe(config), "steps": str(result.steps_done),
                "train_seconds": f"{result.seconds:.0f}", "dataset_size": str(dataset_size),
                "batch_size": str(batch_size), "speed_levels": json.dumps(SPEED_LEVELS),
                "temporal_layers": "" if temporal_layers is None else str(temporal_layers),
                "log_sigma": json.dumps(log_sigma),
                "losses": json.dumps([round(loss, 5) for loss in result.losses]), "log_every": str(config.log_every)}
    return write_safetensors(Path(out) / WEIGHTS_FILE, state, metadata)


def load_toy_image_to_video(folder: str | Path = TOY_IMAGE_TO_VIDEO_DIR, device: str | torch.device = "cpu"):
    """(ToyImageToVideo, metadata) from a folder written by ``train_toy_image_to_video``."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no toy image-to-video model at {path}; make one with "
                                f"`python -m minivdm train-toy-image-to-video --out {folder}`")
    metadata = read_metadata(path)
    model = build_model(None)
    load_trained_layers(model, path, set(trainable_names(model)), "the toy image-to-video model's trained layers")
    return model.to(device).eval(), metadata


# ------------------------------------------------------------------------------------------------
# Sampling: DDIM with SVD's per-frame guidance ramp


def _check_condition(value, name: str, batch: int, low: float, high: float) -> torch.Tensor:
    """A number or a (B,) tensor in [low, high] -> (B,) float."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 1 or value.shape[0] != batch or not value.is_floating_point():
            raise ValueError(f"{name} must be a number or a float tensor (B,) = ({batch},), got "
                             f"{value.dtype} {tuple(value.shape)}")
        if not ((value >= low) & (value <= high)).all():
            raise ValueError(f"{name} must be in [{low}, {high}], got values from {value.min().item():g} to "
                             f"{value.max().item():g}")
        return value.float()
    from minivdm.validation import check_in_range

    return torch.full((batch,), check_in_range(value, name, low, high))


def check_first_frame(first_frame) -> torch.Tensor:
    from minivdm.validation import check_tensor

    check_tensor(first_frame, "first_frame", ndim=4, layout="(B, 3, 32, 32), in [-1, 1]", floating=True)
    if tuple(first_frame.shape[1:]) != (3, 32, 32):
        raise ValueError(f"first_frame must be (B, 3, 32, 32) in [-1, 1] (the toy model was trained on 32x32 RGB "
                         f"frames; a video's frame is video[:, :, 0]), got {tuple(first_frame.shape)}")
    if first_frame.min() < -1.0001 or first_frame.max() > 1.0001:
        raise ValueError(f"first_frame must hold values in [-1, 1], got {first_frame.min().item():.3g} to "
                         f"{first_frame.max().item():.3g} (map [0, 1] images with 2 * x - 1)")
    return first_frame


@torch.no_grad()
def generate_toy_image_to_video(model: ToyImageToVideo, first_frame: torch.Tensor, speed, *,
                                num_frames: int = CLIP_FRAMES, num_steps: int = 20, min_guidance: float = 1.0,
                                max_guidance: float = 3.0, noise_aug=0.0, seed: int = 0) -> torch.Tensor:
    """A clip (B, 3, num_frames, 32, 32) in [-1, 1] that starts from ``first_frame`` (B, 3, 32, 32) and moves at
    ``speed`` px/frame (a number or (B,)); ``noise_aug`` is SVD's noise augmentation strength s. Guidance ramps
    linearly from ``min_guidance`` on frame 0 to ``max_guidance`` on the last frame (1 = no guidance)."""
    from minivdm.diffusion import sample
    from minivdm.methods.image_to_video import frame_guidance_scales
    from minivdm.validation import check_in_range, check_positive_int

    check_first_frame(first_frame)
    batch = first_frame.shape[0]
    speed = _check_condition(speed, "speed (px/frame)", batch, 0.0, MAX_SPEED)
    noise_aug = _check_condition(noise_aug, "noise_aug", batch, 0.0, MAX_NOISE_AUG)
    check_positive_int(num_frames, "num_frames")
    if num_frames > 2 * CLIP_FRAMES:
        raise ValueError(f"num_frames must be <= {2 * CLIP_FRAMES} (the toy model was trained on {CLIP_FRAMES}), "
                         f"got {num_frames}")
    check_positive_int(num_steps, "num_steps")
    check_in_range(min_guidance, "min_guidance", 0.0, 20.0)
    check_in_range(max_guidance, "max_guidance", 0.0, 20.0)

    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    augmented = augment_first_frame(first_frame.float(), noise_aug, torch.randn(first_frame.shape, generator=generator))
    z_1 = torch.randn(batch, 3, num_frames, 32, 32, generator=generator)
    w = frame_guidance_scales(min_guidance, max_guidance, num_frames).reshape(1, 1, num_frames, 1, 1).to(device)
    guided = bool((w != 1).any())
    first = torch.cat([torch.zeros_like(augmented), augmented]) if guided else augmented
    speed, noise_aug, first = (speed.to(device), noise_aug.to(device), first.to(device))

    def model_fn(z_t, t):
        if not guided:
            return model(z_t, t, first, speed, noise_aug)
        both = model(torch.cat([z_t, z_t]), torch.cat([t, t]), first, speed.repeat(2), noise_aug.repeat(2))
        unconditional, conditional = both.chunk(2)  # the first frame's zeros, then the first frame
        return unconditional + w * (conditional - unconditional)

    return sample(model_fn, z_1.to(device), TEXT_TO_IMAGE_SCHEDULE, TEXT_TO_IMAGE_SCHEDULE.uniform_times(num_steps),
                  prediction_type="v", progress=False).clamp(-1, 1).cpu()


# ------------------------------------------------------------------------------------------------
# Measured by the oracle


def held_out_first_frames(n: int, speeds: tuple[float, ...] = EVALUATION_SPEEDS):
    """(first frames (n, 3, 32, 32), requested speeds (n,), real clips (n, 3, 8, 32, 32), their objects): held-out
    toy clips of a moving object made at each requested speed in turn (the toy world slows an object down when
    the trip would leave the frame); the model sees only their first frame and the speed."""
    from minivdm.toyworld import generate
    from minivdm.toyworld.world import ToyWorldConfig
    from minivdm.validation import check_positive_int

    check_positive_int(n, "n")
    video, objects = torch.empty(n, 3, CLIP_FRAMES, 32, 32), [None] * n
    for index, level in enumerate(speeds):
        slots = list(range(index, n, len(speeds)))  # the requests take the speeds in turn
        if slots:
            config = ToyWorldConfig(frames=CLIP_FRAMES, max_objects=1, speed=level, name=f"i2v{level}")
            batch = generate(2 * len(slots) + 20, seed=HELD_OUT_SEED * 100 + index, config=config)
            moving = [i for i, clip_objects in enumerate(batch.objects) if clip_objects[0].motion != "still"]
            video[slots] = batch.video[moving[:len(slots)]]
            for slot, i in zip(slots, moving):
                objects[slot] = batch.objects[i]
    requested = torch.tensor([speeds[i % len(speeds)] for i in range(n)])
    return video[:, :, 0].clone(), requested, video, objects


def fitted_velocity(trajectory: torch.Tensor) -> tuple[float, float]:
    """(vy, vx) px/frame: the least-squares line through the frames where the object is seen."""
    present = ~torch.isnan(trajectory[:, 0])
    frames = torch.arange(len(trajectory), dtype=torch.float64)[present]
    if len(frames) < 2:
        return float("nan"), float("nan")
    points = trajectory[present].double()
    centred = frames - frames.mean()
    slope = (centred[:, None] * (points - points.mean(0))).sum(0) / (centred**2).sum()
    return float(slope[0]), float(slope[1])


def score_clips(videos: torch.Tensor, first_frames: torch.Tensor, truth_objects: list) -> dict[str, list]:
    """Per clip: frame 0's mean absolute error against the given first frame ([0, 1] units); one object seen;
    identity kept (its colour and shape those of the first frame's object); consistent (the oracle's test);
    the speed read (px/frame, nan when not one object); the motion read."""
    from minivdm.toyworld.oracle import read_video

    rows = {"frame0_error": ((videos[:, :, 0] - first_frames).abs().mean((1, 2, 3)) / 2).tolist(),
            "one_object": [], "identity": [], "consistent": [], "speed": [], "motion": []}
    for seen, objects in zip(read_video(videos), truth_objects):
        obj = seen[0] if len(seen) == 1 else None
        (real,) = objects
        rows["one_object"].append(obj is not None)
        rows["identity"].append(obj is not None and (obj.colour, obj.shape) == (real.colour, real.shape))
        rows["consistent"].append(obj is not None and obj.consistent)
        rows["speed"].append(math.hypot(*fitted_velocity(obj.trajectory)) if obj is not None else float("nan"))
        rows["motion"].append(obj.motion if obj is not None else "none")
    return rows


def summarise(rows: dict, requested: torch.Tensor) -> dict:
    """Shares, the median frame-0 error, the speed's rank correlation with the request (clips without one object
    count at speed 0: they did not show the asked motion), mean speed per requested value, directions."""
    from minivdm.toy.rank_correlation import spearman
    from minivdm.toyworld.world import MOTIONS

    n = len(rows["motion"])
    speeds = torch.tensor(rows["speed"]).nan_to_num(0.0)
    out = {"clips": n, "frame0_error_median": float(torch.tensor(rows["frame0_error"]).median()),
           "frame0_error_mean": float(torch.tensor(rows["frame0_error"]).mean())}
    out.update({key: sum(rows[key]) / n for key in ("one_object", "identity", "consistent")})
    out["speed_rank_correlation"] = spearman(requested.tolist(), speeds.tolist())
    out["mean_speed_by_request"] = {f"{level:g}": float(speeds[requested == level].mean())
                                    for level in sorted(set(requested.tolist()))}
    out["motion_distribution"] = {motion: rows["motion"].count(motion) / n for motion in (*MOTIONS, "none")}
    return out


def copy_first_frame(first_frames: torch.Tensor, num_frames: int = CLIP_FRAMES) -> torch.Tensor:
    """The baseline: the first frame held still for the whole clip."""
    return first_frames[:, :, None].expand(-1, -1, num_frames, -1, -1).contiguous()


def evaluate_toy_image_to_video(model: ToyImageToVideo, n: int = 100, *, batch_size: int = 25, num_steps: int = 20,
                                min_guidance: float = 1.0, max_guidance: float = 3.0, noise_aug: float = 0.0,
                                speeds: tuple[float, ...] = EVALUATION_SPEEDS, given_speed: float | None = None,
                                seed: int = 0) -> dict:
    """The model on n held-out first frames, each asked for one of ``speeds`` in turn (``given_speed``: the model
    is told that one speed for every clip instead, the ablation that shows whether it reads the request); its
    figures, per-clip rows and clips, and the figures of the real clips and of the copied first frame."""
    first_frames, requested, real, objects = held_out_first_frames(n, speeds)
    asked = requested if given_speed is None else torch.full_like(requested, given_speed)
    start = time.perf_counter()
    videos = torch.cat([generate_toy_image_to_video(model, first_frames[i:i + batch_size], asked[i:i + batch_size],
                                                    num_steps=num_steps, min_guidance=min_guidance,
                                                    max_guidance=max_guidance, noise_aug=noise_aug, seed=seed + i)
                        for i in range(0, n, batch_size)])
    seconds = time.perf_counter() - start
    rows = score_clips(videos, first_frames, objects)
    return {"model": summarise(rows, requested), "rows": rows, "requested": requested.tolist(),
            "real clips": summarise(score_clips(real, first_frames, objects), requested),
            "copy the first frame": summarise(score_clips(copy_first_frame(first_frames), first_frames, objects),
                                              requested),
            "sampling_seconds": seconds, "videos": videos, "first_frames": first_frames}
