"""Pictures of the diffusion process for chapter 1: what z_t, eps, v and x_hat look like at a
time t, the angle picture of v-parameterization, and the log-SNR curves of schedules.

Pure functions returning matplotlib Figures; the tutorial's widgets call them.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from einops import rearrange
from matplotlib.figure import Figure
from matplotlib.patches import Arc

from minivdm.diffusion import NoiseSchedule, predictions_to_x0_eps, v_from_x0_eps
from minivdm.validation import check_in_range, check_video


def _to_image(frame: torch.Tensor) -> np.ndarray:
    """(C, H, W) in roughly [-1, 1] -> (H, W, C) in [0, 1] for imshow (values outside are clipped)."""
    return rearrange(((frame.float() + 1) / 2).clamp(0, 1), "c h w -> h w c").cpu().numpy()


@torch.no_grad()
def noising_panels(x: torch.Tensor, t: float, schedule: NoiseSchedule, noise: torch.Tensor,
                   model_fn: Callable | None = None, prediction_type: str = "v") -> dict[str, torch.Tensor]:
    """The tensors of one noising step for a video x (1, C, T, H, W): x, eps, z_t, v and, with a
    model, its prediction turned into v_hat and x_hat."""
    check_video(x, "x")
    check_in_range(t, "t", 0.0, 1.0)
    t_tensor = torch.tensor([t], dtype=torch.float64)
    alpha, sigma = (value.item() for value in schedule.alpha_sigma(t_tensor))
    z_t = alpha * x + sigma * noise
    panels = {"x (data)": x, "eps (noise)": noise, "z_t": z_t, "v = alpha eps - sigma x": v_from_x0_eps(x, noise, alpha, sigma)}
    if model_fn is not None:
        prediction = model_fn(z_t, t_tensor.float())
        x_hat, eps_hat = predictions_to_x0_eps(prediction, z_t, alpha, sigma, prediction_type)
        panels["v_hat (model)"] = v_from_x0_eps(x_hat, eps_hat, alpha, sigma)
        panels["x_hat (model)"] = x_hat
    return panels


def plot_noising(x: torch.Tensor, t: float, schedule: NoiseSchedule, noise: torch.Tensor,
                 model_fn: Callable | None = None, prediction_type: str = "v", max_frames: int = 4) -> Figure:
    """One row per tensor of ``noising_panels``, one column per frame (eps and v are shown scaled by 1/2)."""
    panels = noising_panels(x, t, schedule, noise, model_fn, prediction_type)
    frames = min(max_frames, x.shape[2])
    alpha, sigma = (value.item() for value in schedule.alpha_sigma(torch.tensor([t], dtype=torch.float64)))
    figure = Figure(figsize=(1.5 * frames + 1.6, 1.5 * len(panels)))
    axes = figure.subplots(len(panels), frames, squeeze=False)
    for row, (name, tensor) in enumerate(panels.items()):
        shown = tensor / 2 if name.startswith(("eps", "v")) else tensor  # unit-variance tensors span ~[-2, 2]
        for column in range(frames):
            axis = axes[row, column]
            axis.imshow(_to_image(shown[0, :, column]))
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(f"frame {column}")
            if column == 0:
                axis.set_ylabel(name, fontsize=8)
    figure.suptitle(f"t = {t:.2f}:  alpha_t = {alpha:.3f}, sigma_t = {sigma:.3f}, "
                    f"log-SNR = {2 * math.log(max(alpha, 1e-12) / max(sigma, 1e-12)):.2f}")
    figure.tight_layout()
    return figure


def plot_angle(t: float, schedule: NoiseSchedule) -> Figure:
    """The circle picture of Salimans & Ho (2022): z_phi = cos(phi) x + sin(phi) eps, and v its tangent."""
    check_in_range(t, "t", 0.0, 1.0)
    phi = schedule.phi(torch.tensor([t], dtype=torch.float64)).item()
    alpha, sigma = math.cos(phi), math.sin(phi)
    figure = Figure(figsize=(4.6, 4.4))
    axis = figure.subplots()
    angles = np.linspace(0, math.pi / 2, 100)
    axis.plot(np.cos(angles), np.sin(angles), color="0.7", lw=1)
    axis.annotate("", xy=(1.05, 0), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="0.3"))
    axis.annotate("", xy=(0, 1.05), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="0.3"))
    axis.text(1.07, -0.04, "x (data)")
    axis.text(-0.04, 1.08, "eps (noise)")
    axis.annotate("", xy=(alpha, sigma), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="tab:blue", lw=2))
    axis.text(alpha + 0.03, sigma + 0.03, "z_phi", color="tab:blue")
    axis.annotate("", xy=(alpha - 0.35 * sigma, sigma + 0.35 * alpha), xytext=(alpha, sigma),
                  arrowprops=dict(arrowstyle="->", color="tab:red", lw=2))
    axis.text(alpha - 0.35 * sigma - 0.12, sigma + 0.35 * alpha + 0.04, "v = dz/dphi", color="tab:red")
    axis.plot([alpha, alpha], [0, sigma], ls=":", color="tab:blue")
    axis.plot([0, alpha], [sigma, sigma], ls=":", color="tab:blue")
    axis.add_patch(Arc((0, 0), 0.4, 0.4, theta1=0, theta2=math.degrees(phi), color="tab:green"))
    axis.text(0.22 * math.cos(phi / 2) + 0.02, 0.22 * math.sin(phi / 2), "phi", color="tab:green")
    axis.set_xlim(-0.45, 1.3)
    axis.set_ylim(-0.15, 1.3)
    axis.set_aspect("equal")
    axis.set_xlabel(f"alpha_t = cos(phi) = {alpha:.3f}")
    axis.set_ylabel(f"sigma_t = sin(phi) = {sigma:.3f}")
    axis.set_title(f"t = {t:.2f}, phi = {phi:.3f} rad ({math.degrees(phi):.1f} deg)")
    figure.tight_layout()
    return figure


def plot_schedules(schedules: dict[str, NoiseSchedule], points: int = 400) -> Figure:
    """log-SNR lambda_t, and alpha_t / sigma_t, against t for each named schedule."""
    t = torch.linspace(0.0, 1.0, points, dtype=torch.float64)[1:]
    figure = Figure(figsize=(9, 3.4))
    left, right = figure.subplots(1, 2)
    for name, schedule in schedules.items():
        left.plot(t, schedule.log_snr(t), label=name)
        alpha, sigma = schedule.alpha_sigma(t)
        line, = right.plot(t, alpha, label=f"{name}: alpha_t")
        right.plot(t, sigma, ls="--", color=line.get_color(), label=f"{name}: sigma_t")
    left.set_title("log-SNR lambda_t = log(alpha_t^2 / sigma_t^2)")
    left.set_xlabel("t")
    left.set_ylabel("lambda_t")
    left.legend()
    right.set_title("signal and noise scales")
    right.set_xlabel("t")
    right.set_ylabel("scale")
    right.legend(fontsize=7)
    figure.tight_layout()
    return figure
