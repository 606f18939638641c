r"""Dense optical flow from scratch: Horn–Schunck, coarse to fine, with warping.

Stable Video Diffusion (Blattmann et al. 2023, arXiv:2311.15127, Sec. 3.1 and App. C) computes dense
optical flow at 2 fps and drops clips whose average flow magnitude is below a threshold: clips that
barely move teach a video model nothing about motion. This module is the flow; ``motion.py`` turns
it into the score.

Convention
    ``flow[:, y, x] = (dx, dy)`` in pixels, such that ``frame1(x + dx, y + dy) ~= frame0(x, y)``: the
    content at pixel (x, y) of frame0 is found at (x + dx, y + dy) in frame1 (forward flow, the same
    convention as OpenCV's ``calcOpticalFlowFarneback(prev=frame0, next=frame1)``). x grows to the
    right, y grows downwards, so an object moving right has dx > 0 and one moving up has dy < 0.

Brightness constancy
    A point keeps its grey level while it moves: I1(x + u, y + v) = I0(x, y). Expanded to first
    order around the current estimate w0 = (u0, v0), with I1w(x) = I1(x + w0(x)) the warped frame,

        I_x (u - u0) + I_y (v - v0) + (I1w - I0) = 0,   i.e.   I_x u + I_y v + I_t = 0,
        I_t = I1w - I0 - I_x u0 - I_y v0,

    one equation per pixel for two unknowns (the aperture problem): along an edge only the normal
    component is seen, and inside a flat region nothing is.

Horn–Schunck (Horn and Schunck 1981)
    Fill in the missing constraint with smoothness: minimise over the whole field

        E(u, v) = sum_x (I_x u + I_y v + I_t)^2 + alpha^2 (|grad u|^2 + |grad v|^2).

    Setting dE/du = dE/dv = 0 with the discrete Laplacian grad^2 u ~ u_bar - u (u_bar the weighted
    average of the 8 neighbours: 1/6 on edges, 1/12 on corners) gives, per pixel,

        (alpha^2 + I_x^2 + I_y^2) u = (alpha^2 + I_y^2) u_bar - I_x I_y v_bar - I_x I_t,

    solved by the Jacobi iteration (every pixel updated from the previous iterate's averages)

        u^{k+1} = u_bar^k - I_x (I_x u_bar^k + I_y v_bar^k + I_t) / (alpha^2 + I_x^2 + I_y^2)
        v^{k+1} = v_bar^k - I_y (I_x u_bar^k + I_y v_bar^k + I_t) / (alpha^2 + I_x^2 + I_y^2).

    Each step pulls the neighbourhood average towards the brightness-constancy line of the pixel (all
    the way when alpha = 0); where the gradient is zero (a flat region) u is just the average of its
    neighbours, so the flow found at edges and texture diffuses inwards. alpha (``smoothness``) trades
    data for smoothness, in grey-level-gradient units (grey levels in [-1, 1] per pixel). A pure
    translation costs nothing in smoothness, so any alpha recovers it; a larger alpha converges more
    slowly on faint texture and spreads flow further from motion edges, a smaller one lets pixel
    noise through. The default 0.2 was chosen on translations and on the tuning footage (noise vs
    slowest moving clip); see ``bench/motion_vs_farneback.py``.

Coarse to fine, with warping
    The linearisation only holds for |w - w0| below about one pixel (at the scale the image was
    smoothed). A Gaussian pyramid halves the resolution per level, so a 6 px shift at 32 x 32 is a
    1.5 px shift at 8 x 8. Start at the coarsest level with w = 0; at every level, upsample the coarser
    flow (values times 2), then ``warps`` times: warp frame1 towards frame0 with ``F.grid_sample`` at
    x + w(x), recompute the derivatives (``F.conv2d``), run the Jacobi iterations for the total flow,
    and median-filter the result (5 x 5), which removes the outliers that warping would otherwise
    amplify (Sun, Roth and Black 2010, "Secrets of optical flow estimation"). Pixels whose match
    x + w falls outside frame1 carry no data term; their flow comes from the smoothness alone.

Grey level
    The mean of R, G and B (C = 3), or the single channel (C = 1). Equal weights average independent
    per-channel noise best (sigma / sqrt(3)) and leave no hue nearly invisible: with BT.601 luma the
    toy world's blue sits only 0.11 (in [0, 1]) above its grey background.

Limits. Horn–Schunck fills every flat region with the flow of its edges, so on the toy world (flat
shapes on a background whose texture is only +-0.04) a moving object's flow also spreads into the
background; and a texture moved by more than about half its wavelength (a 6 px pan of 5..14 px
waves) is ambiguous to any local method, so its direction is lost while its magnitude stays well
above zero.

Why Horn–Schunck rather than pyramidal Lucas–Kanade: both were run with the same pyramid, warps,
derivatives and median filter. Lucas–Kanade (2 x 2 least squares in a Gaussian window, sigma 2 px)
had twice the end-point error on textured translations (mean 0.11 vs 0.05 px) and, because each
window is solved on its own, let sensor noise through: on 10 tuning footages the slowest moving
clip scored 1.8 x the noisiest static clip (sigma 0.05) with Lucas–Kanade and 6.3 x with
Horn–Schunck, whose global smoothness averages noise over the whole frame. Against OpenCV's
Farneback on the same 32 x 32 textures (``bench/motion_vs_farneback.py``) the mean end-point error
is 0.01..0.06 px for shifts of 0.3..6 px, Farneback's 0.02..1.6 px.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from minivdm.validation import check_positive_int, check_tensor

# Grey = mean of R, G, B (see "Grey level" above).
GREY_WEIGHTS = (1 / 3, 1 / 3, 1 / 3)
# The coarsest pyramid level keeps at least this many pixels along its shorter side: below that the
# Gaussian smoothing leaves no structure to match.
MIN_LEVEL_SIZE = 8
# Gaussian blur of the input frames (makes derivatives meaningful, averages pixel noise) and the
# anti-aliasing blur before each halving; in pixels of the level blurred.
PRESMOOTH_SIGMA = 1.0
PYRAMID_SIGMA = 1.0
DEFAULT_ITERATIONS = 60
DEFAULT_SMOOTHNESS = 0.2
DEFAULT_WARPS = 3
MEDIAN_SIZE = 5             # window of the median filter applied after every warp

FRAMES_LAYOUT = "(C, H, W) or (N, C, H, W) with C = 1 (grey) or C = 3 (RGB)"


def to_grey(frames: Tensor) -> Tensor:
    """(N, C, H, W) with C = 1 or 3, in [-1, 1] -> (N, 1, H, W) grey level in [-1, 1]."""
    if frames.shape[1] == 1:
        return frames
    weights = torch.tensor(GREY_WEIGHTS, dtype=frames.dtype, device=frames.device)
    return torch.einsum("nchw,c->nhw", frames, weights)[:, None]


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, 1, H, W), edges replicated (so a flat image stays flat)."""
    radius = max(1, math.ceil(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    along_x = rearrange(kernel, "k -> 1 1 1 k")
    along_y = rearrange(kernel, "k -> 1 1 k 1")
    horizontal = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), along_x)
    return F.conv2d(F.pad(horizontal, (0, 0, radius, radius), mode="replicate"), along_y)


def image_gradients(images: Tensor) -> tuple[Tensor, Tensor]:
    """Central differences (I(x+1) - I(x-1)) / 2 of (N, 1, H, W): (I_x, I_y), edges replicated."""
    kernel = torch.tensor([-0.5, 0.0, 0.5], dtype=images.dtype, device=images.device)
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    gradient_x = F.conv2d(padded[:, :, 1:-1, :], rearrange(kernel, "k -> 1 1 1 k"))
    gradient_y = F.conv2d(padded[:, :, :, 1:-1], rearrange(kernel, "k -> 1 1 k 1"))
    return gradient_x, gradient_y


def neighbour_average(flow: Tensor) -> Tensor:
    """Horn–Schunck's weighted 8-neighbour average u_bar of each flow component (N, 2, H, W)."""
    kernel = torch.tensor([[1 / 12, 1 / 6, 1 / 12],
                           [1 / 6, 0.0, 1 / 6],
                           [1 / 12, 1 / 6, 1 / 12]], dtype=flow.dtype, device=flow.device)
    kernel = kernel.expand(2, 1, 3, 3)
    # Replicated edges: no flow leaks through the frame border (a zero-gradient boundary condition).
    return F.conv2d(F.pad(flow, (1, 1, 1, 1), mode="replicate"), kernel, groups=2)


def warp(images: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """images(x + flow(x)) by bilinear sampling, and a (N, 1, H, W) mask of where x + flow is inside.

    ``images`` (N, 1, H, W); ``flow`` (N, 2, H, W) in pixels, (dx, dy).
    """
    _, _, height, width = images.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=flow.dtype, device=flow.device),
                            torch.arange(width, dtype=flow.dtype, device=flow.device), indexing="ij")
    target_x = xs + flow[:, 0]
    target_y = ys + flow[:, 1]
    # grid_sample with align_corners=True maps pixel centres 0 and W-1 to -1 and +1.
    grid = torch.stack([2 * target_x / max(width - 1, 1) - 1, 2 * target_y / max(height - 1, 1) - 1], dim=-1)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
    inside = (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
    return warped, inside[:, None].to(images.dtype)


def gaussian_pyramid(images: Tensor, levels: int) -> list[Tensor]:
    """[finest, ..., coarsest]: each level is the previous one blurred and halved (rounding up)."""
    pyramid = [images]
    for _ in range(levels - 1):
        previous = pyramid[-1]
        size = (math.ceil(previous.shape[-2] / 2), math.ceil(previous.shape[-1] / 2))
        blurred = gaussian_blur(previous, PYRAMID_SIGMA)
        pyramid.append(F.interpolate(blurred, size=size, mode="bilinear", align_corners=False))
    return pyramid


def default_levels(height: int, width: int) -> int:
    """As many halvings as keep the shorter side >= MIN_LEVEL_SIZE (1 level for tiny frames)."""
    levels = 1
    while min(height, width) / 2**levels >= MIN_LEVEL_SIZE:
        levels += 1
    return levels


def upsample_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Coarse flow (N, 2, h, w) -> (N, 2, H, W); displacements scale with the resolution."""
    scale = torch.tensor([size[1] / flow.shape[-1], size[0] / flow.shape[-2]], dtype=flow.dtype, device=flow.device)
    upsampled = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    return upsampled * rearrange(scale, "c -> 1 c 1 1")


def median_filter(flow: Tensor, size: int = MEDIAN_SIZE) -> Tensor:
    """Per-component median over size x size windows of (N, 2, H, W), edges replicated."""
    pad = size // 2
    padded = F.pad(flow, (pad, pad, pad, pad), mode="replicate")
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)              # (N, 2, H, W, size, size)
    windows = rearrange(windows, "n c h w wy wx -> n c h w (wy wx)")
    return windows.median(dim=-1).values


def horn_schunck_level(frame0: Tensor, frame1: Tensor, flow: Tensor, *, iterations: int, smoothness: float,
                       warps: int) -> Tensor:
    """Refine ``flow`` (N, 2, H, W) between smoothed grey frames (N, 1, H, W) at one pyramid level."""
    alpha_squared = smoothness**2
    gradient0_x, gradient0_y = image_gradients(frame0)
    for _ in range(warps):
        frame1_warped, inside = warp(frame1, flow)
        gradient1_x, gradient1_y = image_gradients(frame1_warped)
        # Averaging both frames' gradients makes the linearisation symmetric (second-order accurate).
        I_x = 0.5 * (gradient0_x + gradient1_x) * inside
        I_y = 0.5 * (gradient0_y + gradient1_y) * inside
        u0, v0 = flow[:, :1], flow[:, 1:]
        I_t = (frame1_warped - frame0) * inside - I_x * u0 - I_y * v0
        denominator = alpha_squared + I_x**2 + I_y**2
        for _ in range(iterations):
            flow_bar = neighbour_average(flow)
            u_bar, v_bar = flow_bar[:, :1], flow_bar[:, 1:]
            residual = (I_x * u_bar + I_y * v_bar + I_t) / denominator
            flow = torch.cat([u_bar - I_x * residual, v_bar - I_y * residual], dim=1)
        flow = median_filter(flow)
    return flow


def _check_frames(frame0, frame1) -> tuple[Tensor, Tensor, bool]:
    check_tensor(frame0, "frame0", ndim=(3, 4), layout=FRAMES_LAYOUT, floating=True)
    check_tensor(frame1, "frame1", ndim=(3, 4), layout=FRAMES_LAYOUT, floating=True)
    if frame0.shape != frame1.shape:
        raise ValueError(f"frame0 and frame1 must have the same shape {FRAMES_LAYOUT}, "
                         f"got {tuple(frame0.shape)} and {tuple(frame1.shape)}")
    single = frame0.ndim == 3
    if single:
        frame0, frame1 = frame0[None], frame1[None]
    channels, height, width = frame0.shape[1:]
    if channels not in (1, 3):
        raise ValueError(f"frames must be {FRAMES_LAYOUT}, got {channels} channels in shape {tuple(frame0.shape)}")
    if height < 2 or width < 2:
        raise ValueError(f"frames must be at least 2 x 2 pixels, got H = {height}, W = {width}")
    if not (torch.isfinite(frame0).all() and torch.isfinite(frame1).all()):
        raise ValueError("frames must be finite (grey levels in [-1, 1]), got nan or inf")
    return frame0, frame1, single


@torch.no_grad()
def optical_flow(frame0: Tensor, frame1: Tensor, *, levels: int | None = None, iterations: int = DEFAULT_ITERATIONS,
                 smoothness: float = DEFAULT_SMOOTHNESS, warps: int = DEFAULT_WARPS) -> Tensor:
    """Dense flow from frame0 to frame1 by coarse-to-fine Horn–Schunck with warping.

    frame0, frame1: (C, H, W) or a batch (N, C, H, W), C = 3 (RGB, averaged into grey) or 1 (grey), values
    in [-1, 1]. Returns (2, H, W) (or (N, 2, H, W)) float32 flow in pixels, channel 0 = dx (right),
    channel 1 = dy (down), such that frame1(x + flow(x)) ~= frame0(x).

    levels: pyramid levels (1 = no pyramid; default: halve while the shorter side stays >= 8 px).
    iterations: Jacobi iterations per warp and level. smoothness: alpha, in grey-level gradient units
    (larger = smoother, slower to follow edges). warps: re-linearisations per level.
    """
    frame0, frame1, single = _check_frames(frame0, frame1)
    height, width = frame0.shape[-2:]
    if levels is None:
        levels = default_levels(height, width)
    check_positive_int(levels, "levels")
    if min(height, width) / 2 ** (levels - 1) < 2:
        raise ValueError(f"levels={levels} halves a {height} x {width} frame below 2 pixels; "
                         f"use at most {default_levels(height, width)} (or levels=None)")
    check_positive_int(iterations, "iterations")
    check_positive_int(warps, "warps")
    if isinstance(smoothness, bool) or not isinstance(smoothness, (int, float)) or not smoothness > 0:
        raise ValueError(f"smoothness must be a positive number (alpha, in grey-level gradient units), "
                         f"got {smoothness!r}")

    # Blurring first makes the derivatives meaningful (and averages away pixel noise); the pyramid's
    # own anti-aliasing blur does the same for the coarser levels.
    grey0 = gaussian_blur(to_grey(frame0.float()), PRESMOOTH_SIGMA)
    grey1 = gaussian_blur(to_grey(frame1.float()), PRESMOOTH_SIGMA)
    pyramid0 = gaussian_pyramid(grey0, levels)
    pyramid1 = gaussian_pyramid(grey1, levels)
    coarsest = pyramid0[-1]
    flow = coarsest.new_zeros(coarsest.shape[0], 2, *coarsest.shape[-2:])
    for level0, level1 in zip(reversed(pyramid0), reversed(pyramid1)):
        if flow.shape[-2:] != level0.shape[-2:]:
            flow = upsample_flow(flow, tuple(level0.shape[-2:]))
        flow = horn_schunck_level(level0, level1, flow, iterations=iterations, smoothness=float(smoothness), warps=warps)
    return flow[0] if single else flow
