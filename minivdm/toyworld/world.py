"""The toy world: a seeded generator of small captioned videos with exact ground truth.

Each sample shows one or more flat shapes (circle, square, triangle) in distinct palette colours on a
dark grey background. Every object either moves in a straight line at constant speed (left, right, up,
down) or stands still, and stays fully inside the frame for all T frames. Edges are hard (no
anti-aliasing), so every pixel belongs to exactly one object or to the background, and the oracle in
``minivdm.toyworld.oracle`` can read the video back exactly.

Ground truth carried by every sample: per-frame visible masks (after occlusion), depth order, object
boundaries, centre trajectories and a caption such as "a red circle moving left and a blue square
standing still".

Geometry conventions
    * Pixel (i, j) has its centre at (y, x) = (i, j); y grows downwards, so "up" means y decreases.
    * An object of half-size ``radius`` r centred at (cy, cx) covers the pixels whose centre lies
      strictly inside its shape: circle |d| < r, square |dy|, |dx| < r, triangle pointing up with its
      apex at (cy - r, cx) and its base of width 2r along y = cy + r. ``positions`` hold (cy, cx), the
      centre of the shape's bounding box (for a triangle this is not its centroid).
    * Objects are listed front-most first: ``objects[b][0]`` has depth 0 and hides everything behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from minivdm.validation import check_positive_int

# Colours sit near the corners of the RGB cube, so any two are >= 0.65 apart (L2, in [0, 1] units)
# and every one is >= 0.8 from the background: a per-pixel nearest-colour rule survives noise.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.80, 0.10),
    "blue": (0.10, 0.20, 1.00),
    "yellow": (0.95, 0.90, 0.10),
    "magenta": (0.90, 0.10, 0.90),
    "cyan": (0.10, 0.85, 0.90),
}
BACKGROUND: tuple[float, float, float] = (0.15, 0.15, 0.15)
SHAPES = ("circle", "square", "triangle")
MOTIONS = ("left", "right", "up", "down", "still")

# Unit step (dy, dx) of each motion; y grows downwards.
MOTION_DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (0.0, -1.0),
    "right": (0.0, 1.0),
    "up": (-1.0, 0.0),
    "down": (1.0, 0.0),
    "still": (0.0, 0.0),
}

# Faint enough (+-0.04 around the grey) that a textured pixel is never mistaken for a palette colour.
TEXTURE_AMPLITUDE = 0.04
# With two objects, the one behind keeps at least this fraction of its area in every frame, and is
# fully visible in at least one frame, so its colour and shape stay readable.
MIN_VISIBLE_FRACTION = 0.8
# Pixels kept free between an object and the frame border.
BORDER_MARGIN = 1


@dataclass(frozen=True)
class ToyWorldConfig:
    """What the generator draws. Radii are given for size 32 and scale with ``size``."""

    size: int = 32            # H (and W unless ``width`` is given)
    frames: int = 8           # T; frames=1 gives single images (motion is then always "still")
    max_objects: int = 2      # each sample has 1..max_objects objects, in distinct colours
    min_radius: int = 5       # object half-size in pixels at size 32
    max_radius: int = 8
    speed: float = 1.5        # pixels per frame; lowered for a sample if needed to stay in the frame
    camera_pan: bool = False  # the background texture drifts at a constant velocity (implies texture)
    texture: bool = False     # faint static background texture
    name: str = "tiny"
    width: int | None = None  # W when the frame is not square (e.g. 48 for 32x48); radii still scale with H

    def __post_init__(self):
        check_positive_int(self.size, "size")
        check_positive_int(self.frames, "frames")
        check_positive_int(self.max_objects, "max_objects")
        check_positive_int(self.min_radius, "min_radius")
        check_positive_int(self.max_radius, "max_radius")
        if self.width is not None:
            check_positive_int(self.width, "width")
        if self.max_objects > len(PALETTE):
            raise ValueError(f"max_objects must be <= {len(PALETTE)} (one palette colour per object), "
                             f"got {self.max_objects}")
        if self.min_radius > self.max_radius:
            raise ValueError(f"min_radius ({self.min_radius}) must be <= max_radius ({self.max_radius})")
        if isinstance(self.speed, bool) or not isinstance(self.speed, (int, float)) or self.speed <= 0:
            raise ValueError(f"speed must be a positive number of pixels per frame, got {self.speed!r}")
        if min(self.room(self.scaled_radius(self.max_radius), extent) for extent in self.frame_size) < 1:
            raise ValueError(f"max_radius {self.max_radius} (scaled to {self.scaled_radius(self.max_radius)} px) "
                             f"leaves no room to place an object in a {self.size}x{self.frame_size[1]} frame")

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return self.size, self.size if self.width is None else self.width

    def scaled_radius(self, radius: int) -> int:
        return max(2, round(radius * self.size / 32))

    def room(self, radius: int, extent: int | None = None) -> float:
        """Range of centre coordinates along an axis of ``extent`` pixels (default H) that keeps an object of this
        radius inside."""
        extent = self.size if extent is None else extent
        return (extent - 1 - BORDER_MARGIN - radius) - (radius + BORDER_MARGIN)


@dataclass
class ToyObject:
    colour: str                 # a key of PALETTE
    shape: str                  # one of SHAPES
    motion: str                 # one of MOTIONS
    radius: int                 # half-size in pixels (already scaled to the frame size)
    start: tuple[float, float]  # (y, x) centre at frame 0
    speed: float = 1.5          # pixels per frame along ``motion`` (ignored when still)

    def centres(self, frames: int) -> np.ndarray:
        """(T, 2) float (y, x) centre in every frame."""
        step = np.array(MOTION_DIRECTIONS[self.motion]) * self.speed
        return np.array(self.start) + np.arange(frames)[:, None] * step


@dataclass
class ToyBatch:
    video: Tensor      # (B, 3, T, H, W) float32 in [-1, 1]
    masks: Tensor      # (B, N, T, H, W) bool, visible pixels of object n; all False for absent objects
    depth: Tensor      # (B, N) long, 0 = front-most; -1 for absent objects
    edges: Tensor      # (B, 1, T, H, W) bool, boundary pixels of the visible objects
    positions: Tensor  # (B, N, T, 2) float (y, x) bounding-box centres; nan for absent objects
    captions: list[str]
    objects: list[list[ToyObject]]  # per sample, front-most first (index n matches masks[:, n])
    config: ToyWorldConfig
    pan_velocity: Tensor | None = field(default=None)  # (B, 2) (vy, vx) px/frame of the background

    def __len__(self) -> int:
        return self.video.shape[0]

    @property
    def images(self) -> Tensor:
        """(B, 3, H, W) first frame of every sample: the image view for frames=1 batches."""
        return self.video[:, :, 0]

    @property
    def depth_maps(self) -> Tensor:
        """(B, 1, T, H, W) float in [-1, 1]: the ground-truth depth image, inverse depth as MiDaS gives it
        (near is large). The background is the far plane, -1; an object of depth order d (0 = front-most) among
        the N slots is 1 - 2 d / N on its visible pixels, so nearer objects are brighter. It carries geometry
        (silhouettes, occlusion, motion) and nothing of colour: Gen-1's structure s on the toy world."""
        slots = self.masks.shape[1]
        level = 1.0 - 2.0 * self.depth.clamp(min=0).float() / slots  # (B, N)
        depth = torch.full((self.masks.shape[0], 1, *self.masks.shape[2:]), -1.0)
        for n in reversed(range(slots)):  # back to front; visible masks do not overlap anyway
            depth = torch.where(self.masks[:, n:n + 1], level[:, n, None, None, None, None], depth)
        return depth


def caption_for(objects: list[ToyObject], *, with_motion: bool = True) -> str:
    """'a red circle moving left and a blue square standing still' (objects in the order given)."""
    if not isinstance(objects, (list, tuple)) or not all(isinstance(o, ToyObject) for o in objects):
        raise TypeError(f"objects must be a list of ToyObject, got {type(objects).__name__}")
    parts = []
    for obj in objects:
        part = f"a {obj.colour} {obj.shape}"
        if with_motion:
            part += " standing still" if obj.motion == "still" else f" moving {obj.motion}"
        parts.append(part)
    return " and ".join(parts)


# Drawing uses numpy: the arrays are small, and single-threaded numpy stays fast on a busy CPU where
# torch's thread pool can stall. Tensors are made once per sample at the end of render().

def object_masks(objects: list[ToyObject], config: ToyWorldConfig) -> np.ndarray:
    """(N, T, H, W) bool full silhouettes, before occlusion, of the objects in every frame."""
    (height, width), frames = config.frame_size, config.frames
    masks = np.zeros((len(objects), frames, height, width), dtype=bool)
    rows, columns = np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64)
    for n, obj in enumerate(objects):
        centres = obj.centres(frames)                              # (T, 2)
        dy = rows[None, :, None] - centres[:, 0, None, None]       # (T, H, 1)
        dx = columns[None, None, :] - centres[:, 1, None, None]    # (T, 1, W)
        r = obj.radius
        if obj.shape == "circle":
            masks[n] = dy**2 + dx**2 < r**2
        elif obj.shape == "square":
            masks[n] = (np.abs(dy) < r) & (np.abs(dx) < r)
        elif obj.shape == "triangle":
            # Apex at dy = -r, base of half-width r at dy = +r.
            masks[n] = (np.abs(dy) < r) & (np.abs(dx) < (dy + r) / 2)
        else:
            raise ValueError(f"shape must be one of {SHAPES}, got {obj.shape!r}")
    return masks


def visible_masks(full_masks: np.ndarray) -> np.ndarray:
    """Occlusion: object n shows only where no object in front of it (index < n) is drawn."""
    visible = full_masks.copy()
    covered = np.zeros_like(full_masks[0])
    for n in range(full_masks.shape[0]):
        visible[n] &= ~covered
        covered |= full_masks[n]
    return visible


def _scene_is_readable(objects: list[ToyObject], config: ToyWorldConfig) -> bool:
    full = object_masks(objects, config)
    visible = visible_masks(full)
    fraction = visible.sum((-1, -2)) / np.maximum(full.sum((-1, -2)), 1)   # (N, T)
    return bool((fraction >= MIN_VISIBLE_FRACTION).all() and (fraction == 1).any(axis=1).all())


def _sample_one(rng: np.random.Generator, config: ToyWorldConfig, colour: str) -> ToyObject:
    radius = config.scaled_radius(int(rng.integers(config.min_radius, config.max_radius + 1)))
    shape = SHAPES[rng.integers(len(SHAPES))]
    motion = "still" if config.frames == 1 else MOTIONS[rng.integers(len(MOTIONS))]
    low = radius + BORDER_MARGIN
    rooms = [config.room(radius, extent) for extent in config.frame_size]   # along y, along x
    dy, dx = MOTION_DIRECTIONS[motion]
    # Slow down (for this object only) when the trip at full speed would leave the frame.
    along = rooms[1] if dx else rooms[0]
    speed = min(float(config.speed), along / max(config.frames - 1, 1))
    travel = speed * (config.frames - 1) if motion != "still" else 0.0
    start = []
    for step, room in zip((dy, dx), rooms):
        lo, hi = low, low + room
        if step > 0:
            hi -= travel
        elif step < 0:
            lo += travel
        start.append(float(rng.uniform(lo, hi)))
    return ToyObject(colour=colour, shape=shape, motion=motion, radius=radius,
                     start=(start[0], start[1]), speed=speed)


def sample_objects(rng: np.random.Generator, config: ToyWorldConfig) -> list[ToyObject]:
    """1..max_objects objects in distinct colours, front-most first, each readable in every frame."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (numpy.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    n_objects = int(rng.integers(1, config.max_objects + 1))
    colours = [list(PALETTE)[i] for i in rng.permutation(len(PALETTE))[:n_objects]]
    # Rejection sampling: redraw the whole scene until every object stays readable. Crowded scenes
    # (large objects crossing the middle) rarely pass, so after many misses try one object fewer.
    # Objects are drawn independently, so depth order is already independent of colour, shape, size.
    for count in range(n_objects, 1, -1):
        for _ in range(100):
            objects = [_sample_one(rng, config, colour) for colour in colours[:count]]
            if _scene_is_readable(objects, config):
                return objects
    return [_sample_one(rng, config, colours[0])]


def background_frames(config: ToyWorldConfig, rng: np.random.Generator | None = None,
                      pan_velocity: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(3, T, H, W) background in [0, 1]: plain BACKGROUND, plus a faint texture when configured.

    The texture is a sum of three random plane waves, so it can be evaluated at any sub-pixel shift:
    a camera pan moves the content by ``pan_velocity`` (vy, vx) pixels per frame.
    """
    (height, width), frames = config.frame_size, config.frames
    grey = np.array(BACKGROUND)[:, None, None, None]
    background = np.broadcast_to(grey, (3, frames, height, width)).copy()
    if not (config.texture or config.camera_pan):
        return background
    if rng is None:
        raise ValueError("a textured background needs rng (numpy.random.Generator)")
    wavelength = rng.uniform(5.0, 14.0, size=3)
    angle = rng.uniform(0, 2 * np.pi, size=3)
    phase = rng.uniform(0, 2 * np.pi, size=3)
    t = np.arange(frames, dtype=np.float64)[:, None, None]
    y = np.arange(height, dtype=np.float64)[None, :, None] - pan_velocity[0] * t
    x = np.arange(width, dtype=np.float64)[None, None, :] - pan_velocity[1] * t
    texture = np.zeros((frames, height, width))
    for k in range(3):
        ky, kx = np.sin(angle[k]) * 2 * np.pi / wavelength[k], np.cos(angle[k]) * 2 * np.pi / wavelength[k]
        texture = texture + np.sin(ky * y + kx * x + phase[k]) / 3
    return background + TEXTURE_AMPLITUDE * texture[None]


def render(objects: list[ToyObject], config: ToyWorldConfig, *, background: np.ndarray | Tensor | None = None) -> dict:
    """Draw one sample. Returns a dict of per-sample ground truth (the fields of ToyBatch, without B).

    ``background`` is a (3, T, H, W) tensor in [0, 1] (default: plain BACKGROUND); objects are painted
    back to front over it. Masks, depth and positions have N = config.max_objects rows, absent ones
    padded with False / -1 / nan.
    """
    if len(objects) > config.max_objects:
        raise ValueError(f"got {len(objects)} objects but config.max_objects is {config.max_objects}")
    (height, width), frames, n_max = config.frame_size, config.frames, config.max_objects
    if background is None:
        background = background_frames(config)
    background = np.asarray(background, dtype=np.float64)
    if background.shape != (3, frames, height, width):
        raise ValueError(f"background must be (3, T, H, W) = {(3, frames, height, width)}, "
                         f"got {tuple(background.shape)}")

    visible = visible_masks(object_masks(objects, config))   # (n, T, H, W)
    rgb = background.copy()
    for n, obj in enumerate(objects):
        colour = np.array(PALETTE[obj.colour])[:, None, None, None]
        rgb = np.where(visible[n][None], colour, rgb)

    masks = np.zeros((n_max, frames, height, width), dtype=bool)
    masks[: len(objects)] = visible
    # A boundary pixel is visible but has a 4-neighbour outside its own object's visible mask.
    padded = np.pad(masks, ((0, 0), (0, 0), (1, 1), (1, 1)))
    interior = padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1] & padded[..., 1:-1, :-2] & padded[..., 1:-1, 2:]
    edges = (masks & ~interior).any(axis=0, keepdims=True)

    depth = np.full(n_max, -1)
    depth[: len(objects)] = np.arange(len(objects))
    positions = np.full((n_max, frames, 2), np.nan)
    for n, obj in enumerate(objects):
        positions[n] = obj.centres(frames)

    return {
        "video": torch.from_numpy(rgb * 2 - 1).float(),   # [0, 1] -> [-1, 1]
        "masks": torch.from_numpy(masks),
        "depth": torch.from_numpy(depth).long(),
        "edges": torch.from_numpy(edges),
        "positions": torch.from_numpy(positions).float(),
        "caption": caption_for(objects, with_motion=frames > 1),
        "objects": list(objects),
    }


def _pan_velocity(rng: np.random.Generator, config: ToyWorldConfig) -> tuple[float, float]:
    if not config.camera_pan:
        return (0.0, 0.0)
    angle = rng.uniform(0, 2 * np.pi)
    return (float(config.speed * np.sin(angle)), float(config.speed * np.cos(angle)))


def generate(n: int, seed: int = 0, config: ToyWorldConfig = ToyWorldConfig()) -> ToyBatch:
    """n captioned toy videos; the same (n, seed, config) always gives the same batch."""
    check_positive_int(n, "n")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not isinstance(config, ToyWorldConfig):
        raise TypeError(f"config must be a ToyWorldConfig, got {type(config).__name__}")
    rng = np.random.default_rng(seed)
    samples, pans = [], []
    for _ in range(n):
        objects = sample_objects(rng, config)
        pan = _pan_velocity(rng, config)
        background = background_frames(config, rng, pan) if (config.texture or config.camera_pan) else None
        samples.append(render(objects, config, background=background))
        pans.append(pan)
    return ToyBatch(
        video=torch.stack([s["video"] for s in samples]),
        masks=torch.stack([s["masks"] for s in samples]),
        depth=torch.stack([s["depth"] for s in samples]),
        edges=torch.stack([s["edges"] for s in samples]),
        positions=torch.stack([s["positions"] for s in samples]),
        captions=[s["caption"] for s in samples],
        objects=[s["objects"] for s in samples],
        config=config,
        pan_velocity=torch.tensor(pans, dtype=torch.float32),
    )


def generate_images(n: int, seed: int = 0, size: int = 32, **config_kwargs) -> ToyBatch:
    """n captioned still images (frames=1); ``batch.images`` is the (B, 3, H, W) tensor."""
    config = ToyWorldConfig(size=size, frames=1, name=f"images{size}", **config_kwargs)
    return generate(n, seed, config)

