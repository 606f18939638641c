"""Optical flow from scratch: known translations are recovered (sub-pixel, and multi-pixel only through the
pyramid), identical frames give zero flow, flow follows the stated convention frame1(x + flow) = frame0(x),
toy-world objects move where their motion says, and the flow pictures show what they claim."""

import math
import os

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports pyplot: no display in tests

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from minivdm.curation.optical_flow import optical_flow, warp
from minivdm.toyworld.world import MOTION_DIRECTIONS, ToyObject, ToyWorldConfig, background_frames, render
from minivdm.viz.flow_plots import colour_wheel, flow_to_colour, plot_flow

# Mean end-point error (pixels) allowed away from the border (4 px) on the smooth textured pattern.
TRANSLATION_EPE = 0.1
BORDER = 4


def textured(size: int, shift=(0.0, 0.0), seed: int = 0) -> torch.Tensor:
    """(1, H, W) smooth texture (six plane waves, wavelengths 12..32 px) in [-1, 1], its content moved by
    shift = (dx, dy) pixels (evaluated exactly at the sub-pixel position, no resampling)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = x - shift[0] * size / 32, y - shift[1] * size / 32
    image = np.zeros((size, size))
    for _ in range(6):
        wavelength = rng.uniform(12, 32) * size / 32
        angle, phase = rng.uniform(0, 2 * np.pi, size=2)
        image += np.sin(2 * np.pi / wavelength * (np.cos(angle) * x + np.sin(angle) * y) + phase) / 4
    return torch.from_numpy(image).float().clamp(-1, 1)[None]


def interior_epe(flow: torch.Tensor, shift) -> float:
    truth = torch.tensor(shift, dtype=torch.float32).view(2, 1, 1)
    return float((flow - truth).norm(dim=0)[BORDER:-BORDER, BORDER:-BORDER].mean())


@pytest.mark.parametrize("shift", [(1.5, -2.0), (0.3, 0.2), (-0.7, 0.4)])
def test_recovers_sub_and_few_pixel_translations(shift):
    for seed in range(2):
        flow = optical_flow(textured(32, seed=seed), textured(32, shift, seed=seed))
        assert flow.shape == (2, 32, 32) and flow.dtype == torch.float32
        assert interior_epe(flow, shift) < TRANSLATION_EPE, (shift, seed)


@pytest.mark.parametrize("shift", [(6.0, 0.0), (-4.0, 4.5)])
def test_multi_pixel_translations_need_the_pyramid(shift):
    frame0, frame1 = textured(32, seed=1), textured(32, shift, seed=1)
    pyramid_epe = interior_epe(optical_flow(frame0, frame1), shift)
    assert pyramid_epe < TRANSLATION_EPE
    # One level linearises around zero flow, valid for about a pixel; warping creeps further on this
    # smooth pattern but stops short of the shift.
    assert interior_epe(optical_flow(frame0, frame1, levels=1), shift) > max(0.3, 3 * pyramid_epe)


def test_identical_frames_give_zero_flow():
    frame = textured(32, seed=3).expand(3, -1, -1).clone()
    assert optical_flow(frame, frame).abs().max() < 1e-6
    flat = torch.full((3, 16, 16), 0.3)
    assert optical_flow(flat, flat).abs().max() < 1e-6


def test_isolated_pixel_flips_are_not_motion():
    """Hot pixels (one pixel jumping to the other end of the range) barely move the flow: the median
    filter after each warp removes such isolated responses (without it the peak is about 1.1 px)."""
    frame0 = textured(32, seed=2)
    frame1 = frame0.clone()
    for y, x in ((16, 16), (8, 24)):
        frame1[0, y, x] = -frame0[0, y, x].sign()
    assert optical_flow(frame0, frame1).norm(dim=0).max() < 0.75


def test_flow_follows_the_stated_convention():
    """frame1 sampled at x + flow(x) is frame0: warping undoes the motion."""
    shift = (2.5, 1.0)
    frame0, frame1 = textured(32, seed=4), textured(32, shift, seed=4)
    flow = optical_flow(frame0, frame1)
    assert flow[0].mean() > 2.0 and flow[1].mean() > 0.5          # content moved right and down
    warped, _ = warp(frame1[None], flow[None])
    inner = (slice(None), slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    before = (frame1 - frame0)[inner].abs().mean()
    after = (warped[0] - frame0)[inner].abs().mean()
    assert after < 0.05 * before


def test_batches_and_colour_match_single_grey_frames():
    shifts = [(1.0, 0.0), (0.0, -1.5)]
    frames0 = torch.stack([textured(32, seed=5)] * 2)
    frames1 = torch.stack([textured(32, s, seed=5) for s in shifts])
    batch = optical_flow(frames0, frames1)
    assert batch.shape == (2, 2, 32, 32)
    for i in range(2):
        assert torch.allclose(batch[i], optical_flow(frames0[i], frames1[i]), atol=1e-5)
    # RGB with equal channels has the same luma as the grey frame.
    rgb = optical_flow(frames0[0].expand(3, -1, -1), frames1[0].expand(3, -1, -1))
    assert torch.allclose(rgb, batch[0], atol=1e-4)


def toy_pair(motion: str, step: int, speed: float = 1.5, shape: str = "square"):
    """Frames 0 and ``step`` of one toy object moving at ``speed`` px/frame over the textured background."""
    config = ToyWorldConfig(size=32, frames=step + 1, texture=True, max_objects=1)
    dy, dx = MOTION_DIRECTIONS[motion]
    start = (16.0 - dy * speed * step / 2, 16.0 - dx * speed * step / 2)   # centred on its path
    obj = ToyObject(colour="red", shape=shape, motion=motion, radius=6, start=start, speed=speed)
    sample = render([obj], config, background=background_frames(config, np.random.default_rng(0)))
    return sample["video"][:, 0], sample["video"][:, step], sample["masks"][0, 0]


@pytest.mark.parametrize("motion", ["left", "right", "up", "down"])
@pytest.mark.parametrize("step", [1, 4])   # 8 fps neighbours (1.5 px), and 2 fps samples (6 px)
def test_toy_object_flow_points_in_its_motion_direction(motion, step):
    frame0, frame1, mask = toy_pair(motion, step, shape="circle" if step == 1 else "square")
    flow = optical_flow(frame0, frame1)
    mean_flow = flow[:, mask].mean(dim=1)                            # (dx, dy) over the object
    dy, dx = MOTION_DIRECTIONS[motion]
    truth = torch.tensor([dx, dy]) * 1.5 * step
    cosine = float(mean_flow @ truth / (mean_flow.norm() * truth.norm()))
    assert cosine > 0.95, (motion, step, mean_flow)
    assert 0.7 < float(mean_flow.norm() / truth.norm()) < 1.3, (motion, step, mean_flow)


@pytest.mark.parametrize("bad, message", [
    (lambda: optical_flow(torch.zeros(8, 8), torch.zeros(8, 8)), r"\(C, H, W\) or \(N, C, H, W\)"),
    (lambda: optical_flow(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9)), "same shape"),
    (lambda: optical_flow(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8)), "C = 1 .grey. or C = 3"),
    (lambda: optical_flow(torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 8, 8, dtype=torch.uint8)),
     "floating dtype"),
    (lambda: optical_flow([0.0], [0.0]), "torch.Tensor"),
    (lambda: optical_flow(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), levels=4), "at most"),
    (lambda: optical_flow(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), smoothness=0), "smoothness must be a positive"),
    (lambda: optical_flow(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8), iterations=0), "iterations must be a positive"),
    (lambda: optical_flow(torch.full((1, 8, 8), math.nan), torch.zeros(1, 8, 8)), "finite"),
])
def test_bad_inputs_name_the_expected_layout(bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        bad()


# --- pictures ---------------------------------------------------------------------------------------

def test_colour_code_is_white_when_still_and_turns_with_direction():
    flow = torch.zeros(2, 4, 4)
    assert np.allclose(flow_to_colour(flow), 1.0)
    flow[0, 0, 0] = 2.0       # right
    flow[0, 0, 1] = -2.0      # left
    flow[1, 0, 2] = 2.0       # down
    colours = flow_to_colour(flow)
    assert np.allclose(colours[0, 0], [1, 0, 0])                      # right = red, fully saturated
    assert np.allclose(colours[0, 1], [0, 1, 1])                      # left = the opposite hue, cyan
    assert not np.allclose(colours[0, 2], colours[0, 0])
    assert np.allclose(flow_to_colour(flow, max_magnitude=4.0)[0, 0], [1, 0.5, 0.5])   # half saturated
    wheel = colour_wheel(33)
    assert np.allclose(wheel[16, 16], 1.0) and np.allclose(wheel[16, 32], [1, 0, 0], atol=0.1)


def test_plot_flow_draws_arrows_at_their_true_length_with_labels():
    frame0, frame1, _ = toy_pair("right", 4)
    flow = optical_flow(frame0, frame1)
    figure = plot_flow(frame0, flow, mode="both", step=4, title="a red square moving right")
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    quiver_axis, colour_axis = figure.axes
    assert len(colour_axis.child_axes) == 1                           # the colour wheel as a key
    for axis in (quiver_axis, colour_axis):
        assert axis.get_xlabel() == "x (pixel)" and axis.get_ylabel() == "y (pixel)" and axis.get_title()
    assert "a red square moving right" in figure._suptitle.get_text()
    arrows = quiver_axis.collections[0]
    assert arrows.scale == 1 and arrows.scale_units == "xy" and arrows.U.size == 64
    assert np.allclose(arrows.U, flow[0, ::4, ::4].flatten()) and np.allclose(arrows.V, flow[1, ::4, ::4].flatten())
    assert len(plot_flow(frame0, flow, mode="quiver").axes) == 1
    with pytest.raises(ValueError, match="mode must be one of"):
        plot_flow(frame0, flow, mode="arrows")
    with pytest.raises(ValueError, match=r"flow must be \(2, H, W\)"):
        plot_flow(frame0, flow[:1])
    with pytest.raises(ValueError, match="same H, W"):
        plot_flow(frame0[:, :16], flow)
