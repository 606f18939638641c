"""Chapter-1 figures: the tensors behind them are the right ones, and the figures carry titles."""

import pytest
import torch

from minivdm.diffusion import CosineSchedule, ScaledLinearSchedule
from minivdm.viz.diffusion_plots import noising_panels, plot_angle, plot_noising, plot_schedules


def test_noising_panels_follow_the_forward_process():
    schedule = CosineSchedule()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 2, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(x.shape, generator=g)
    alpha, sigma = (v.item() for v in schedule.alpha_sigma(torch.tensor([0.3], dtype=torch.float64)))
    exact_v = lambda z_t, t: alpha * noise - sigma * x  # noqa: E731  a perfect v-model
    panels = noising_panels(x, 0.3, schedule, noise, exact_v, "v")
    assert torch.allclose(panels["z_t"], alpha * x + sigma * noise)
    assert torch.allclose(panels["x_hat (model)"], x, atol=1e-5)
    assert torch.allclose(panels["v_hat (model)"], panels["v = alpha eps - sigma x"], atol=1e-5)


def test_figures_have_titles_and_labels():
    schedule = CosineSchedule()
    x = torch.zeros(1, 3, 3, 8, 8)
    figure = plot_noising(x, 0.5, schedule, torch.randn(x.shape))
    assert "alpha_t" in figure._suptitle.get_text()
    assert len(figure.axes) == 4 * 3
    angle = plot_angle(0.5, schedule)
    assert "phi" in angle.axes[0].get_title() and angle.axes[0].get_xlabel()
    curves = plot_schedules({"cosine": schedule, "scaled linear": ScaledLinearSchedule()})
    assert all(axis.get_title() and axis.get_xlabel() for axis in curves.axes)
    assert len(curves.axes[0].lines) == 2


def test_bad_time_is_rejected():
    with pytest.raises(ValueError, match=r"t must be in \[0.0, 1.0\]"):
        plot_angle(1.5, CosineSchedule())
