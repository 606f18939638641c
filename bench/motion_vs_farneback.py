"""Our Horn–Schunck flow and motion score against OpenCV's Farneback flow.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/motion_vs_farneback.py [--seeds 50]

(1) End-point error against known translations of smooth textured images (32 x 32).
(2) On the held-out footage (seeds 1000..1049, true clips sampled at 2 fps): the motion score (mean
    |flow| * fps / W, frame widths per second) from our flow and from Farneback's flow (the same grey
    level, as uint8 frames, at 32 px and upscaled x2 to 64 px); their Spearman rank correlation; and
    each method's static-clip precision / recall, clean and with sensor noise (sigma 0.05) on every
    clip. Farneback's threshold is tuned like ours (``tune_static_threshold``) on tuning seeds.
(3) Time per flow field, one thread.

Needs opencv-python-headless (a benchmark dependency only): pip install opencv-python-headless.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

try:
    import cv2
except ImportError as error:  # pragma: no cover - benchmark dependency
    raise SystemExit("this benchmark needs OpenCV: pip install opencv-python-headless") from error

from minivdm.curation.motion import (
    FOOTAGE_KWARGS,
    MOTION_SAMPLE_FPS,
    STATIC_MOTION_THRESHOLD,
    STATIC_NOISE_SIGMA,
    motion_score,
    sample_frame_indices,
    static_detection_figures,
)
from minivdm.curation.optical_flow import optical_flow, to_grey
from minivdm.toy.rank_correlation import spearman
from minivdm.toyworld.footage import FOOTAGE_FPS, make_footage

SHIFTS = [(0.3, 0.2), (1.5, -2.0), (3.0, 1.0), (6.0, 0.0), (-4.0, 4.5)]
BORDER = 4
# (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma) per upscaling factor: OpenCV's tutorial
# settings at 32 px, and a larger window and polynomial for frames upscaled x2. These were the best of a
# few tried on the translations of (1); x4 upscaling was worse still (smooth uint8 frames give
# Farneback's polynomial expansion too little to fit).
FARNEBACK = {1: (0.5, 3, 15, 3, 5, 1.2), 2: (0.5, 4, 21, 3, 7, 1.5)}
UPSCALED = 2


def textured(size: int, shift=(0.0, 0.0), seed: int = 0) -> np.ndarray:
    """(H, W) smooth texture in [-1, 1] (six plane waves, wavelengths 12..32 px), content moved by shift."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = x - shift[0], y - shift[1]
    image = np.zeros((size, size))
    for _ in range(6):
        wavelength = rng.uniform(12, 32)
        angle, phase = rng.uniform(0, 2 * np.pi, size=2)
        image += np.sin(2 * np.pi / wavelength * (np.cos(angle) * x + np.sin(angle) * y) + phase) / 4
    return np.clip(image, -1, 1)


def to_uint8(grey: np.ndarray) -> np.ndarray:
    return np.round((grey + 1) / 2 * 255).clip(0, 255).astype(np.uint8)


def grey_frames(frames: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W) in [-1, 1], the same grey level our flow uses."""
    return to_grey(rearrange(frames, "c t h w -> t c h w"))[:, 0].numpy()


def farneback(grey0: np.ndarray, grey1: np.ndarray, upscale: int = 1) -> np.ndarray:
    """(2, H, W) (dx, dy) flow from Farneback on uint8 frames, in pixels of the input resolution."""
    image0, image1 = to_uint8(grey0), to_uint8(grey1)
    if upscale > 1:
        size = (image0.shape[1] * upscale, image0.shape[0] * upscale)
        image0 = cv2.resize(image0, size, interpolation=cv2.INTER_CUBIC)
        image1 = cv2.resize(image1, size, interpolation=cv2.INTER_CUBIC)
    flow = cv2.calcOpticalFlowFarneback(image0, image1, None, *FARNEBACK[upscale], 0)
    flow = np.moveaxis(flow, -1, 0) / upscale
    if upscale > 1:   # back to the input grid, so every method is averaged over the same pixels
        flow = F.avg_pool2d(torch.from_numpy(flow)[None], upscale)[0].numpy()
    return flow


def interior_epe(flow: np.ndarray, shift) -> float:
    error = np.hypot(flow[0] - shift[0], flow[1] - shift[1])
    return float(error[BORDER:-BORDER, BORDER:-BORDER].mean())


def translation_table(seeds=range(5)) -> None:
    print("(1) end-point error (px, mean over the interior, 5 textures) for known translations, 32 x 32")
    print(f"{'shift (dx, dy)':>16} {'ours':>8} {'Farneback':>10} {'Farneback x2':>13}")
    for shift in SHIFTS:
        errors = {"ours": [], "farneback": [], "farneback x2": []}
        for seed in seeds:
            grey0, grey1 = textured(32, seed=seed), textured(32, shift, seed=seed)
            ours = optical_flow(torch.from_numpy(grey0).float()[None], torch.from_numpy(grey1).float()[None])
            errors["ours"].append(interior_epe(ours.numpy(), shift))
            errors["farneback"].append(interior_epe(farneback(grey0, grey1), shift))
            errors["farneback x2"].append(interior_epe(farneback(grey0, grey1, upscale=UPSCALED), shift))
        print(f"{str(shift):>16} {np.mean(errors['ours']):8.3f} {np.mean(errors['farneback']):10.3f} "
              f"{np.mean(errors['farneback x2']):13.3f}")


def clip_pairs(seeds, noise_sigma: float = 0.0):
    """Every true clip of the benchmark footage, sampled at 2 fps: (kind, (3, T, H, W) frames)."""
    for seed in seeds:
        footage = make_footage(seed, **FOOTAGE_KWARGS)
        for clip in footage.clips:
            frames = footage.video[:, sample_frame_indices(clip.start, clip.end, FOOTAGE_FPS)]
            if noise_sigma > 0:   # the same noise as footage_motion_scores draws
                generator = torch.Generator().manual_seed(seed * 1000 + clip.start)
                frames = (frames + noise_sigma * torch.randn(frames.shape, generator=generator)).clamp(-1, 1)
            yield clip.kind, frames


def scores(seeds, noise_sigma: float = 0.0) -> dict[str, list]:
    """Motion scores (frame widths per second) of every clip by every method, and the kinds."""
    table = {"kind": [], "ours": [], "farneback": [], "farneback x2": []}
    for kind, frames in clip_pairs(seeds, noise_sigma):
        width = frames.shape[-1]
        grey = grey_frames(frames)
        table["kind"].append(kind)
        table["ours"].append(motion_score(frames))
        for name, upscale in (("farneback", 1), ("farneback x2", UPSCALED)):
            flows = [farneback(grey[t], grey[t + 1], upscale) for t in range(len(grey) - 1)]
            magnitude = np.mean([np.hypot(f[0], f[1]).mean() for f in flows])
            table[name].append(float(magnitude) * MOTION_SAMPLE_FPS / width)
    return table


def tuned_threshold(tuning: dict, tuning_noisy: dict, method: str) -> float:
    """Like tune_static_threshold: geometric mean of the top noisy-static score and the lowest moving one."""
    max_static = max(s for s, k in zip(tuning_noisy[method], tuning_noisy["kind"]) if k == "static")
    min_moving = min(s for s, k in zip(tuning[method], tuning["kind"]) if k != "static")
    return math.sqrt(max_static * min_moving)


def time_per_flow(repeats: int = 20) -> None:
    print("\n(3) time per flow field (one thread, median of repeats; this machine is shared, so times are rough)")
    grey0, grey1 = textured(32, seed=0), textured(32, (1.5, -2.0), seed=0)
    single0, single1 = torch.from_numpy(grey0).float()[None], torch.from_numpy(grey1).float()[None]
    batch0, batch1 = single0.expand(18, 3, -1, -1).contiguous(), single1.expand(18, 3, -1, -1).contiguous()
    cases = {
        "ours, one 32x32 pair": (lambda: optical_flow(single0, single1), 1),
        "ours, batch of 18 pairs (one footage)": (lambda: optical_flow(batch0, batch1), 18),
        "Farneback 32x32": (lambda: farneback(grey0, grey1), 1),
        "Farneback x2 (64x64)": (lambda: farneback(grey0, grey1, upscale=UPSCALED), 1),
    }
    for name, (run, pairs) in cases.items():
        run()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        print(f"  {name:<40} {1000 * np.median(times) / pairs:8.2f} ms per flow field")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50, help="held-out footages (seeds 1000, 1001, ...)")
    parser.add_argument("--tuning-seeds", type=int, default=50, help="tuning footages for Farneback's threshold")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    translation_table()

    held_out = range(1000, 1000 + arguments.seeds)
    tuning_seeds = range(0, arguments.tuning_seeds)
    clean, noisy = scores(held_out), scores(held_out, STATIC_NOISE_SIGMA)
    tuning, tuning_noisy = scores(tuning_seeds), scores(tuning_seeds, STATIC_NOISE_SIGMA)
    print(f"\n(2) motion scores on {len(clean['kind'])} held-out clips ({arguments.seeds} footages), 2 fps, "
          f"frame widths per second")
    print(f"{'method':>14} {'threshold':>10} {'Spearman vs ours':>17} {'P':>6} {'R':>6} "
          f"{'P (noisy)':>10} {'R (noisy)':>10}   median score per kind")
    for method in ("ours", "farneback", "farneback x2"):
        threshold = STATIC_MOTION_THRESHOLD if method == "ours" else tuned_threshold(tuning, tuning_noisy, method)
        figures = static_detection_figures(clean["kind"], clean[method], threshold)
        noisy_figures = static_detection_figures(noisy["kind"], noisy[method], threshold)
        medians = " ".join(f"{kind}={np.median([s for s, k in zip(clean[method], clean['kind']) if k == kind]):.3f}"
                           for kind in ("static", "normal", "text_overlay", "low_quality"))
        print(f"{method:>14} {threshold:10.4f} {spearman(clean['ours'], clean[method]):17.3f} "
              f"{figures['precision']:6.3f} {figures['recall']:6.3f} {noisy_figures['precision']:10.3f} "
              f"{noisy_figures['recall']:10.3f}   {medians}")
    moving = [i for i, kind in enumerate(clean["kind"]) if kind != "static"]
    for method in ("farneback", "farneback x2"):
        rho = spearman([clean["ours"][i] for i in moving], [clean[method][i] for i in moving])
        print(f"  Spearman, ours vs {method}, non-static clips only: {rho:.3f}")

    time_per_flow()


if __name__ == "__main__":
    main()
