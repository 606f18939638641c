"""Properties of the diffusion core: schedules, conversions, samplers, inversion, guidance, loss."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minivdm.diffusion import (
    CosineSchedule,
    ScaledLinearSchedule,
    add_noise,
    classifier_free_guidance,
    ddim_invert,
    ddim_step,
    ddim_step_angular,
    diffusion_loss,
    eps_from_v,
    eps_from_x0,
    predictions_to_x0_eps,
    sample,
    training_target,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)

SCHEDULES = [CosineSchedule(), ScaledLinearSchedule()]
times = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
inner_times = st.floats(min_value=0.02, max_value=0.98, allow_nan=False)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
@given(t=times)
@settings(max_examples=200, deadline=None)
def test_alpha_sigma_lie_on_the_unit_circle(schedule, t):
    alpha, sigma = schedule.alpha_sigma(torch.tensor([t], dtype=torch.float64))
    assert torch.allclose(alpha**2 + sigma**2, torch.ones(1, dtype=torch.float64), atol=1e-6)
    phi = schedule.phi(torch.tensor([t], dtype=torch.float64))
    assert torch.allclose(torch.cos(phi), alpha, atol=1e-6) and torch.allclose(torch.sin(phi), sigma, atol=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_log_snr_decreases_monotonically_and_matches_alpha_sigma(schedule):
    t = torch.linspace(0.01, 1.0, 500, dtype=torch.float64)
    lam = schedule.log_snr(t)
    assert torch.all(lam[1:] < lam[:-1])
    alpha, sigma = schedule.alpha_sigma(t)
    assert torch.allclose(lam, torch.log(alpha**2 / sigma**2), atol=1e-4)


def test_cosine_schedule_reaches_its_log_snr_limits():
    schedule = CosineSchedule(logsnr_max=20, logsnr_min=-20)
    assert schedule.log_snr(torch.tensor(0.0, dtype=torch.float64)).item() == pytest.approx(20, abs=1e-6)
    assert schedule.log_snr(torch.tensor(1.0, dtype=torch.float64)).item() == pytest.approx(-20, abs=1e-6)
    phi = schedule.phi(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert phi[1] - phi[0] == pytest.approx(phi[2] - phi[1])  # the angle is linear in t


def test_scaled_linear_matches_diffusers_table_and_timestep_mapping():
    from diffusers import DDIMScheduler

    ours = ScaledLinearSchedule()
    theirs = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)
    k = torch.arange(1000)
    assert torch.equal(ours.timestep_from_t(ours.t_from_timestep(k)), k)
    alpha_bar = ours.alpha_bar(ours.t_from_timestep(k))
    assert torch.equal(alpha_bar.float(), theirs.alphas_cumprod)
    assert ours.alpha_bar(torch.tensor(0.0)).item() == 1.0


@given(t=inner_times, seed=st.integers(0, 2**16))
@settings(max_examples=100, deadline=None)
def test_conversions_round_trip(t, seed):
    schedule = CosineSchedule()
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(2, 3, 4, 5, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    alpha, sigma = schedule.alpha_sigma(torch.tensor(t, dtype=torch.float64))
    z_t = alpha * x0 + sigma * eps
    v = v_from_x0_eps(x0, eps, alpha, sigma)
    assert torch.allclose(x0_from_eps(z_t, eps, alpha, sigma), x0, atol=1e-9)
    assert torch.allclose(eps_from_x0(z_t, x0, alpha, sigma), eps, atol=1e-9)
    assert torch.allclose(x0_from_v(z_t, v, alpha, sigma), x0, atol=1e-9)
    assert torch.allclose(eps_from_v(z_t, v, alpha, sigma), eps, atol=1e-9)
    for kind, prediction in (("eps", eps), ("x0", x0), ("v", v)):
        x_hat, eps_hat = predictions_to_x0_eps(prediction, z_t, alpha, sigma, kind)
        assert torch.allclose(x_hat, x0, atol=1e-8) and torch.allclose(eps_hat, eps, atol=1e-8)
        assert torch.equal(training_target(x0, eps, alpha, sigma, kind), prediction)


@given(t=inner_times)
@settings(max_examples=50, deadline=None)
def test_v_is_the_velocity_of_z_along_the_circle(t):
    """v = dz/dphi: a finite difference of z_phi = cos(phi) x + sin(phi) eps."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    phi, h = torch.tensor(t * math.pi / 2, dtype=torch.float64), 1e-6
    z = lambda p: torch.cos(p) * x0 + torch.sin(p) * eps  # noqa: E731
    finite_difference = (z(phi + h) - z(phi - h)) / (2 * h)
    assert torch.allclose(v_from_x0_eps(x0, eps, torch.cos(phi), torch.sin(phi)), finite_difference, atol=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
@given(t=inner_times, dt=st.floats(0.001, 0.5), seed=st.integers(0, 2**16), kind=st.sampled_from(["eps", "x0", "v"]))
@settings(max_examples=100, deadline=None)
def test_ddim_alpha_sigma_and_angular_forms_agree(schedule, t, dt, seed, kind):
    s = max(t - dt, 0.0)
    g = torch.Generator().manual_seed(seed)
    z_t = torch.randn(2, 3, 2, 4, 4, generator=g, dtype=torch.float64)
    prediction = torch.randn(z_t.shape, generator=g, dtype=torch.float64)
    t_, s_ = torch.tensor(t, dtype=torch.float64), torch.tensor(s, dtype=torch.float64)
    alpha_t, sigma_t = schedule.alpha_sigma(t_)
    alpha_s, sigma_s = schedule.alpha_sigma(s_)
    z_s = ddim_step(z_t, prediction, alpha_t, sigma_t, alpha_s, sigma_s, kind)
    x_hat, eps_hat = predictions_to_x0_eps(prediction, z_t, alpha_t, sigma_t, kind)
    v_hat = v_from_x0_eps(x_hat, eps_hat, alpha_t, sigma_t)
    z_s_angular = ddim_step_angular(z_t, v_hat, schedule.phi(t_), schedule.phi(s_))
    scale = 1 + x_hat.abs().max()  # eps-form divides by alpha_t: compare relative to |x_hat|
    assert torch.allclose(z_s, z_s_angular, atol=1e-6 * scale)


def gaussian_data_denoiser(mu, std, schedule):
    """The exact posterior-mean denoiser for data x ~ N(mu, std^2 I), as a v-prediction model."""

    def model_fn(z_t, t):
        alpha, sigma = schedule.alpha_sigma(t.to(torch.float64))
        alpha = alpha.to(z_t).view(-1, *[1] * (z_t.ndim - 1))
        sigma = sigma.to(z_t).view(-1, *[1] * (z_t.ndim - 1))
        x_hat = mu + alpha * std**2 / (alpha**2 * std**2 + sigma**2) * (z_t - alpha * mu)
        eps_hat = (z_t - alpha * x_hat) / sigma
        return v_from_x0_eps(x_hat, eps_hat, alpha, sigma)

    return model_fn


def test_ddim_inversion_then_sampling_reconstructs_the_input():
    schedule = CosineSchedule(logsnr_max=10, logsnr_min=-10)
    model_fn = gaussian_data_denoiser(mu=0.3, std=0.5, schedule=schedule)
    x = 0.3 + 0.5 * torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = []
    for steps in (5, 50, 500):
        grid = schedule.uniform_times(steps)
        z_1 = ddim_invert(model_fn, x, schedule, grid, progress=False)
        x_back = sample(model_fn, z_1, schedule, grid, progress=False)
        errors.append((x_back - x).abs().max().item())
    # inversion re-uses the prediction of the previous time: a first-order method, error ~ 1/steps
    assert errors[2] < 0.02, errors
    assert errors[2] < errors[1] / 5 < errors[0] / 25, errors


@pytest.mark.parametrize("sampler", ["ddim", "ddim_angular", "ddpm"])
def test_samplers_draw_from_the_data_distribution(sampler):
    """With the exact denoiser of N(0.5, 0.2^2), samples have that mean and std (up to discretisation)."""
    schedule = CosineSchedule(logsnr_max=10, logsnr_min=-10)
    model_fn = gaussian_data_denoiser(mu=0.5, std=0.2, schedule=schedule)
    g = torch.Generator().manual_seed(1)
    z_1 = torch.randn(64, 1, 1, 16, 16, generator=g, dtype=torch.float64)
    x = sample(model_fn, z_1, schedule, schedule.uniform_times(1000), sampler=sampler, generator=g, progress=False)
    assert x.mean().item() == pytest.approx(0.5, abs=0.005)
    assert x.std().item() == pytest.approx(0.2, abs=0.005)


def test_add_noise_has_the_right_marginals():
    schedule = ScaledLinearSchedule()
    x = torch.full((4000, 1, 4, 4), 0.8)
    t = torch.full((4000,), 0.5)
    z_t, eps = add_noise(x, t, schedule, generator=torch.Generator().manual_seed(0))
    alpha, sigma = schedule.alpha_sigma(torch.tensor(0.5))
    assert z_t.mean().item() == pytest.approx(0.8 * alpha.item(), abs=0.01)
    assert z_t.std().item() == pytest.approx(sigma.item(), abs=0.01)
    assert torch.allclose(z_t, alpha.float() * x + sigma.float() * eps)


def test_classifier_free_guidance_extrapolates():
    cond, uncond = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert torch.equal(classifier_free_guidance(cond, uncond, 1.0), cond)
    assert torch.equal(classifier_free_guidance(cond, uncond, 0.0), uncond)
    assert torch.equal(classifier_free_guidance(cond, uncond, 3.0), 3 * cond)


@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
def test_loss_is_zero_for_the_exact_target_and_positive_otherwise(kind):
    schedule = CosineSchedule()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 2, 4, 4, generator=g)
    noise = torch.randn(x.shape, generator=g)
    t = torch.tensor([0.1, 0.5, 0.9])
    alpha, sigma = schedule.alpha_sigma(t)
    alpha, sigma = alpha.float().view(-1, 1, 1, 1, 1), sigma.float().view(-1, 1, 1, 1, 1)
    target = training_target(x, noise, alpha, sigma, kind)
    perfect = lambda z_t, t_: target  # noqa: E731
    assert diffusion_loss(perfect, x, schedule, kind, t=t, noise=noise).item() == pytest.approx(0, abs=1e-10)
    wrong = lambda z_t, t_: target + 0.1  # noqa: E731
    assert diffusion_loss(wrong, x, schedule, kind, t=t, noise=noise).item() == pytest.approx(0.01, rel=1e-4)


def test_clip_x0_keeps_the_estimate_in_range_and_consistent():
    from minivdm.diffusion.samplers import denoised_estimates

    schedule = CosineSchedule()
    alpha, sigma = schedule.alpha_sigma(torch.tensor(0.9))
    z_t = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    prediction = 5 * torch.randn(z_t.shape, generator=torch.Generator().manual_seed(1))
    x_hat, eps_hat = denoised_estimates(prediction, z_t, alpha, sigma, "eps", clip_x0=True)
    assert x_hat.abs().max() <= 1 and x_hat.abs().max() == 1  # something was clipped
    assert torch.allclose(alpha * x_hat + sigma * eps_hat, z_t, atol=1e-5)  # still decomposes z_t


@pytest.mark.parametrize("call, match", [
    (lambda: sample(lambda z, t: z, torch.randn(3, 8, 8), CosineSchedule(), CosineSchedule().uniform_times(2)), r"\(B, C, H, W\) or \(B, C, T, H, W\)"),
    (lambda: sample(lambda z, t: z, torch.randn(1, 3, 8, 8), CosineSchedule(), torch.tensor([0.0, 1.0])), "strictly decreasing"),
    (lambda: sample(lambda z, t: z[:, :1], torch.randn(1, 3, 8, 8), CosineSchedule(), CosineSchedule().uniform_times(2)), "shaped like z"),
    (lambda: sample(lambda z, t: z, torch.randn(1, 3, 8, 8), CosineSchedule(), CosineSchedule().uniform_times(2), prediction_type="noise"), "prediction_type"),
    (lambda: sample(lambda z, t: z, torch.randn(1, 3, 8, 8), CosineSchedule(), CosineSchedule().uniform_times(2), sampler="euler"), "sampler"),
    (lambda: CosineSchedule().alpha_sigma(torch.tensor([1.5])), r"\[0, 1\]"),
    (lambda: CosineSchedule().alpha_sigma(torch.tensor([3])), "floating"),
    (lambda: ScaledLinearSchedule().t_from_timestep(torch.tensor([1000])), "timestep must be in"),
    (lambda: add_noise(torch.randn(2, 3, 8, 8), torch.rand(3), CosineSchedule()), "one time per batch item"),
    (lambda: add_noise(torch.randint(0, 255, (2, 3, 8, 8)), torch.rand(2), CosineSchedule()), "floating"),
    (lambda: classifier_free_guidance(torch.zeros(1, 3), torch.zeros(2, 3), 2.0), "same shape"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
