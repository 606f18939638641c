"""The oracle reads shapes drawn by a renderer other than the toy world's: anti-aliased, blurred, noisy.

The renderer here draws each shape at 8x the resolution with hard edges and averages every 8x8 block
down to one pixel, so edge pixels hold the fraction of the pixel the shape covers (anti-aliasing).
Same geometry as the toy world (pixel (i, j) centred at (y, x) = (i, j); a triangle points up with its
apex at cy - r and its base at cy + r), but radii and centres are real numbers.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from minivdm.toyworld import PALETTE, SHAPES, ToyWorldConfig, generate
from minivdm.toyworld.oracle import caption_video, colour_fidelity, read_video, score_videos, seam_scores
from minivdm.toyworld.world import BACKGROUND

SUPERSAMPLING = 8


def coverage(shape: str, radius: float, centre: tuple[float, float], size: int) -> np.ndarray:
    """(H, W) fraction of each pixel inside the shape, from an 8x supersampled hard-edged drawing."""
    sub = (np.arange(size * SUPERSAMPLING) + 0.5) / SUPERSAMPLING - 0.5   # sub-pixel centres, pixel units
    dy = sub[:, None] - centre[0]
    dx = sub[None, :] - centre[1]
    if shape == "circle":
        inside = dy**2 + dx**2 < radius**2
    elif shape == "square":
        inside = (np.abs(dy) < radius) & (np.abs(dx) < radius)
    else:
        inside = (np.abs(dy) < radius) & (np.abs(dx) < (dy + radius) / 2)
    blocks = rearrange(inside.astype(np.float64), "(h i) (w j) -> h w (i j)", i=SUPERSAMPLING, j=SUPERSAMPLING)
    return blocks.mean(-1)


def paint(alpha: np.ndarray, colour: str) -> torch.Tensor:
    """(T, H, W) coverage -> (3, T, H, W) video in [-1, 1]: the colour blended over the background."""
    background = np.array(BACKGROUND)[:, None, None, None]
    rgb = background + (np.array(PALETTE[colour])[:, None, None, None] - background) * alpha[None]
    return torch.from_numpy(rgb * 2 - 1).float()


def gaussian_blur(video: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every frame of a (B, 3, T, H, W) video (edges replicated)."""
    offsets = torch.arange(-3, 4, dtype=torch.float32)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    frames = rearrange(video, "b c t h w -> (b c t) 1 h w")
    frames = F.conv2d(F.pad(frames, (3, 3, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 7))
    frames = F.conv2d(F.pad(frames, (0, 0, 3, 3), mode="replicate"), kernel.view(1, 1, 7, 1))
    return rearrange(frames, "(b c t) 1 h w -> b c t h w", b=video.shape[0], c=video.shape[1])


def random_scenes(n: int, seed: int, size: int = 32, frames: int = 4):
    """n one-object videos: random shape, colour, radius (toy-world range and a little beyond), position
    and straight motion, all anti-aliased. Returns the (n, 3, T, H, W) batch and the true shapes."""
    rng = np.random.default_rng(seed)
    scale = size / 32
    videos, shapes = [], []
    for index in range(n):
        shape = SHAPES[index % len(SHAPES)]
        colour = list(PALETTE)[rng.integers(len(PALETTE))]
        radius = rng.uniform(4.5, 8.5) * scale
        step = rng.uniform(-1.5, 1.5, size=2) * scale
        # Keep 2 px between the shape and the border in every frame, so it is always fully in view.
        low = radius + 2 + np.maximum(-step, 0) * (frames - 1)
        high = size - 1 - radius - 2 - np.maximum(step, 0) * (frames - 1)
        start = rng.uniform(low, high)
        alpha = np.stack([coverage(shape, radius, tuple(start + t * step), size) for t in range(frames)])
        videos.append(paint(alpha, colour))
        shapes.append(shape)
    return torch.stack(videos), shapes


def read_shapes(video: torch.Tensor) -> list[str | None]:
    return [objects[0].shape if len(objects) == 1 else None for objects in read_video(video)]


@pytest.mark.parametrize("size, cases", [(32, 300), (64, 60)])
def test_anti_aliased_blurred_and_noisy_shapes_are_read_right(size, cases):
    # The old rule (bounding-box fill of the hard mask, largest frame only) read 1.000, 0.997, 0.980, 0.977
    # and 0.830 of these right at size 32, taking squares for circles; at size 64 it read them all.
    clean, truth = random_scenes(cases, seed=size, size=size)
    generator = torch.Generator().manual_seed(size)

    def noise(std):
        return std * torch.randn(clean.shape, generator=generator)

    required = {
        "anti-aliased": (clean, 1.0),
        "blur 0.8": (gaussian_blur(clean, 0.8), 1.0),
        "blur 0.5 + noise 0.05": ((gaussian_blur(clean, 0.5) + noise(0.05)).clamp(-1, 1), 1.0),
        "blur 0.8 + noise 0.05": ((gaussian_blur(clean, 0.8) + noise(0.05)).clamp(-1, 1), 1.0),
        "blur 1.0 + noise 0.1 (stress)": ((gaussian_blur(clean, 1.0) + noise(0.1)).clamp(-1, 1), 0.98),
    }
    for name, (video, least) in required.items():
        seen = read_video(video)
        shapes = [objects[0].shape if len(objects) == 1 else None for objects in seen]
        right = np.mean([s == t for s, t in zip(shapes, truth)])
        print(f"\nsize {size}, {name}: shape read right in {right:.3f} of {len(truth)} videos")
        assert right >= least, (name, [(t, s) for s, t in zip(shapes, truth) if s != t][:5])
        if least == 1.0:
            agreement = [objects[0].shape_agreement for objects in seen]
            assert min(agreement) == 1.0, (name, "every frame of a steady shape reads the same")


def test_small_blurred_noisy_squares_are_not_read_as_circles():
    # The case that broke the old rule: the soft row around a small square, half of it labelled by noise,
    # widened the bounding box but not the area (HEAD oracle: 0.90-0.93 right here).
    videos, truth = [], []
    for radius in (4.5, 5.0, 5.5):
        for offset_y in np.linspace(0, 1, 4, endpoint=False):
            for offset_x in np.linspace(0, 1, 4, endpoint=False):
                for shape in ("square", "circle"):
                    videos.append(paint(coverage(shape, radius, (15 + offset_y, 16 + offset_x), 32)[None], "red"))
                    truth.append(shape)
    video = gaussian_blur(torch.stack(videos), 0.8)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        noisy = (video + 0.05 * torch.randn(video.shape, generator=generator)).clamp(-1, 1)
        assert read_shapes(noisy) == truth


def shape_changing_video(first: str, second: str, frames: int = 8) -> torch.Tensor:
    """(1, 3, T, 32, 32): one blue object moving right at 1.5 px/frame, ``first`` in the first half of the
    frames and ``second`` in the second (the same radius, so the area changes little)."""
    alpha = np.stack([coverage(first if t < frames // 2 else second, 6.0, (15.3, 8.2 + 1.5 * t), 32)
                      for t in range(frames)])
    return paint(alpha, "blue")[None]


def test_an_object_that_changes_shape_half_way_is_not_consistent():
    steady = read_video(shape_changing_video("circle", "circle"))[0][0]
    assert steady.consistent and steady.shape == "circle" and steady.motion == "right"
    assert steady.shape_agreement == 1.0
    for first, second in (("circle", "square"), ("square", "circle"), ("circle", "triangle")):
        changing = read_video(shape_changing_video(first, second))[0][0]
        print(f"\n{first} -> {second}: read {changing.shape}, agreement {changing.shape_agreement:.2f}")
        assert changing.shape_agreement == 0.5
        assert not changing.consistent, (first, second)
        assert changing.motion == "right", "only the shape gives it away"


def test_frames_where_the_object_is_clipped_or_occluded_do_not_vote():
    # A square sliding off the right border: clipped frames look like thinner rectangles, but the object
    # is still one steady square.
    alpha = np.stack([coverage("square", 6.0, (15.0, 10.0 + 3.0 * t), 32) for t in range(8)])
    clipped = read_video(paint(alpha, "green")[None])[0][0]
    assert clipped.shape == "square" and clipped.shape_agreement == 1.0
    # Toy-world scenes with two objects that overlap in some frames: partly hidden frames do not vote, even
    # when blur and noise leave a band of unlabelled pixels between the two objects.
    truth = generate(200, seed=3, config=ToyWorldConfig(frames=8, max_objects=2))
    generator = torch.Generator().manual_seed(3)
    blurred = (gaussian_blur(truth.video, 0.8) + 0.1 * torch.randn(truth.video.shape, generator=generator)).clamp(-1, 1)
    for video in (truth.video, blurred):
        agreement = [o.shape_agreement for objects in read_video(video) for o in objects]
        assert min(agreement) == 1.0


def test_videos_in_other_ranges_are_refused_with_the_range_named():
    truth = generate(8, seed=1)
    as_uint8_values = (truth.video + 1) * 127.5          # [0, 255], as float
    as_unit = (truth.video + 1) / 2                       # [0, 1]
    one = truth.video[0]
    for wrong in (as_uint8_values, as_unit):
        for read in (read_video, colour_fidelity, lambda v: score_videos(v, truth.captions),
                     lambda v: seam_scores(v, [4])):
            with pytest.raises(ValueError, match=r"\[-1, 1\].*video / 127.5 - 1"):
                read(wrong)
        with pytest.raises(ValueError, match=r"\[-1, 1\]"):
            caption_video(wrong[0])
    with pytest.raises(ValueError, match="finite"):
        read_video(torch.where(truth.video > 0, float("nan"), truth.video))
    # Legitimate [-1, 1] videos are read, including ones with no negative value and unclamped samples.
    assert sorted(caption_video(one).split(" and ")) == sorted(truth.captions[0].split(" and "))
    assert read_video(torch.ones(2, 3, 4, 32, 32)) == [[], []], "all white is a [-1, 1] video"
    assert read_video(torch.full((1, 3, 4, 32, 32), 0.5)) == [[]]
    assert len(read_video(truth.video * 1.2)) == 8, "a sample overshooting [-1, 1] a little is read"


def test_the_range_check_never_refuses_toy_world_videos():
    configs = (ToyWorldConfig(), ToyWorldConfig(frames=1), ToyWorldConfig(size=64, frames=4),
               ToyWorldConfig(camera_pan=True), ToyWorldConfig(max_objects=6, min_radius=2, max_radius=4))
    for config in configs:
        truth = generate(60, seed=9, config=config)
        for video in (truth.video, (truth.video + 0.1 * torch.randn(truth.video.shape)).clamp(-1, 1)):
            read_video(video)  # raises if refused
            # Also one video at a time: the check must hold per video, not only on a mixed batch.
            for single in video[:10]:
                read_video(single)


def test_noise_leaves_a_margin_between_square_and_circle_fill_ratios():
    # One-object toy-world images, blurred and noisy (std 0.1): squares keep their fill ratio near 1 and
    # circles near pi/4, each well clear of the cut-off, so no single frame flips between them.
    from minivdm.toyworld.oracle import SQUARE_MIN_FILL

    truth = generate(300, seed=21, config=ToyWorldConfig(frames=1, max_objects=1))
    generator = torch.Generator().manual_seed(21)
    video = (gaussian_blur(truth.video, 0.8) + 0.1 * torch.randn(truth.video.shape, generator=generator)).clamp(-1, 1)
    fills = {"square": [], "circle": []}
    for objects, seen in zip(truth.objects, read_video(video)):
        if objects[0].shape in fills:
            fills[objects[0].shape].append(seen[0].fill_ratio)
    print(f"\nfill ratio: squares >= {min(fills['square']):.3f}, circles <= {max(fills['circle']):.3f}, "
          f"cut-off {SQUARE_MIN_FILL}")
    assert min(fills["square"]) >= SQUARE_MIN_FILL + 0.03
    assert max(fills["circle"]) <= SQUARE_MIN_FILL - 0.03
