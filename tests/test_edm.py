"""EDM (Karras et al., 2022): the preconditioning's defining properties, and parity with the Euler sampler that
Stable Video Diffusion runs through diffusers' EulerDiscreteScheduler."""

import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from minivdm.diffusion.edm import edm_denoiser, edm_preconditioning, karras_sigmas, sample_euler_edm
from minivdm.diffusion.parameterization import v_from_x0_eps

# stabilityai/stable-video-diffusion-img2vid(-xt)'s scheduler_config.json, the keys EulerDiscreteScheduler reads
SVD_SCHEDULER = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction", "interpolation_type": "linear", "use_karras_sigmas": True,
    "sigma_min": 0.002, "sigma_max": 700.0, "timestep_spacing": "leading", "timestep_type": "continuous",
    "steps_offset": 1,
}
STEPS = 25
SHAPE = (2, 4, 3, 4, 4)  # (B, C, T, H, W); the scheduler is elementwise, so the layout is ours for both loops
TOLERANCE = 1e-5


def svd_scheduler(steps: int = STEPS) -> EulerDiscreteScheduler:
    scheduler = EulerDiscreteScheduler(**SVD_SCHEDULER)
    scheduler.set_timesteps(steps)
    return scheduler


def make_fake_model():
    """A stand-in for SVD's U-Net: a fixed channel mix plus a term that depends on the timestep it receives."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 4, generator=generator) / 2
    bias = torch.randn(4, generator=generator) / 4

    def fake_model(x_in, timestep):
        mixed = torch.einsum("oc,bcthw->bothw", weight, x_in) + bias.view(1, 4, 1, 1, 1)
        return mixed + 0.3 * torch.tanh(x_in) * timestep.view(-1, 1, 1, 1, 1)
    return fake_model


# ---- parity with diffusers (SVD's configuration) -------------------------------------------------------------------

def test_karras_sigmas_match_diffusers_svd_scheduler():
    theirs = svd_scheduler().sigmas
    ours = karras_sigmas(STEPS, 0.002, 700.0)
    assert ours.shape == theirs.shape == (STEPS + 1,)
    torch.testing.assert_close(ours, theirs.double(), rtol=1e-6, atol=0)  # diffusers rounds to float32
    assert ours[0].item() == pytest.approx(700.0, rel=1e-12) and ours[-1] == 0.0


def test_timesteps_and_init_noise_sigma_match_diffusers():
    scheduler = svd_scheduler()
    sigmas = karras_sigmas(STEPS, 0.002, 700.0).float()[:-1]
    c_noise = edm_preconditioning(sigmas, 1.0, parameterization="v").c_noise
    assert (c_noise - scheduler.timesteps).abs().max().item() <= TOLERANCE
    # timestep_spacing="leading": sqrt(sigma_max^2 + 1), the std of x + sigma_max n for unit-variance x
    assert float(scheduler.init_noise_sigma) == pytest.approx(math.sqrt(700.0**2 + 1), rel=1e-7)
    linspace = EulerDiscreteScheduler(**{**SVD_SCHEDULER, "timestep_spacing": "linspace"})
    linspace.set_timesteps(STEPS)
    assert float(linspace.init_noise_sigma) == pytest.approx(700.0, rel=1e-7)


def test_euler_sampler_retraces_diffusers_step_for_step():
    fake_model = make_fake_model()
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))

    scheduler = svd_scheduler()
    latents = noise * scheduler.init_noise_sigma
    their_inputs, their_timesteps, their_denoised, their_trajectory = [], [], [], []
    for timestep in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, timestep)
        output = fake_model(model_input, timestep.expand(SHAPE[0]))
        step = scheduler.step(output, timestep, latents)
        latents = step.prev_sample
        their_inputs.append(model_input)
        their_timesteps.append(timestep.expand(SHAPE[0]))
        their_denoised.append(step.pred_original_sample)
        their_trajectory.append(latents)

    our_inputs, our_timesteps, our_trajectory = [], [], []

    def recording_model(x_in, c_noise):
        our_inputs.append(x_in)
        our_timesteps.append(c_noise)
        return fake_model(x_in, c_noise)

    result = sample_euler_edm(recording_model, noise, progress=False, trajectory=our_trajectory)
    assert len(our_trajectory) == len(their_trajectory) == STEPS
    assert torch.equal(result, our_trajectory[-1])

    sigmas = scheduler.sigmas.double()
    for i in range(STEPS):
        assert (our_inputs[i] - their_inputs[i]).abs().max().item() <= TOLERANCE, f"model input, step {i}"
        assert (our_timesteps[i] - their_timesteps[i]).abs().max().item() <= TOLERANCE, f"timestep, step {i}"
        # D on diffusers' own latents: c_skip and the sign of c_out against step()'s v_prediction branch
        latents_before = noise * scheduler.init_noise_sigma if i == 0 else their_trajectory[i - 1]
        ours_denoised = edm_denoiser(fake_model, latents_before, sigmas[i].item(), sigma_data=1.0,
                                     parameterization="v")
        assert (ours_denoised - their_denoised[i]).abs().max().item() <= TOLERANCE, f"denoised x, step {i}"
        # latents carry noise of std sqrt(sigma^2 + 1) (700 at the start): measured in that unit, which is
        # exactly the difference the next model input sees; after the last step (sigma = 0) it is absolute
        scale = math.sqrt(sigmas[i + 1].item() ** 2 + 1)
        difference = (our_trajectory[i] - their_trajectory[i]).abs().max().item() / scale
        assert difference <= TOLERANCE, f"latents after step {i}: {difference:.2e} (in units of sqrt(sigma^2 + 1))"
    assert (result - their_trajectory[-1]).abs().max().item() <= TOLERANCE


# ---- properties of the preconditioning -----------------------------------------------------------------------------

@pytest.mark.parametrize("sigma_data", [0.5, 1.0])
def test_scalars_at_sigma_equal_sigma_data(sigma_data):
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma_data, sigma_data)
    assert c_skip.item() == pytest.approx(0.5)
    assert c_out.item() == pytest.approx(sigma_data / math.sqrt(2))
    assert c_in.item() == pytest.approx(1 / (sigma_data * math.sqrt(2)))
    assert c_noise.item() == pytest.approx(math.log(sigma_data) / 4)
    v_scalars = edm_preconditioning(sigma_data, sigma_data, parameterization="v")
    assert v_scalars.c_out.item() == pytest.approx(-c_out.item())
    assert (v_scalars.c_skip, v_scalars.c_in, v_scalars.c_noise) == (c_skip, c_in, c_noise)


@pytest.mark.parametrize("parameterization", ["edm", "v"])
@pytest.mark.parametrize("sigma", [0.002, 0.3, 1.0, 7.0, 700.0])
def test_zero_network_gives_the_optimal_denoiser_of_gaussian_data(sigma, parameterization):
    # x ~ N(0, sigma_data^2 I): E[x | x + sigma n] = sigma_data^2 / (sigma_data^2 + sigma^2) y, and F = 0 gives it
    sigma_data = 0.5
    y = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    D = edm_denoiser(lambda x_in, c_noise: torch.zeros_like(x_in), y, sigma, sigma_data=sigma_data,
                     parameterization=parameterization)
    torch.testing.assert_close(D, sigma_data**2 / (sigma_data**2 + sigma**2) * y, rtol=1e-12, atol=0)


@pytest.mark.parametrize("parameterization, sigma_data", [("edm", 0.5), ("v", 1.0)])
@pytest.mark.parametrize("sigma", [0.002, 0.5, 3.0, 80.0])
def test_the_training_target_round_trips_through_the_denoiser(sigma, parameterization, sigma_data):
    generator = torch.Generator().manual_seed(3)
    x = sigma_data * torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    n = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    y = x + sigma * n
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, sigma_data, parameterization=parameterization)
    target = (x - c_skip * y) / c_out  # Eq. 8

    def perfect_model(x_in, received_noise):
        torch.testing.assert_close(x_in, c_in * y)
        torch.testing.assert_close(received_noise, c_noise.expand(SHAPE[0]))
        return target

    D = edm_denoiser(perfect_model, y, sigma, sigma_data=sigma_data, parameterization=parameterization)
    torch.testing.assert_close(D, x, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sigma", [0.002, 0.5, 3.0, 700.0])
def test_svd_parameterization_predicts_salimans_and_hos_velocity(sigma):
    # the latent z = c_in y = alpha x + s n (variance preserving) and v = alpha n - s x (minivdm's own definition)
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    n = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    y = x + sigma * n
    alpha, s = 1 / math.sqrt(sigma**2 + 1), sigma / math.sqrt(sigma**2 + 1)
    c_skip, c_out, c_in, _ = edm_preconditioning(sigma, 1.0, parameterization="v")
    torch.testing.assert_close(c_in * y, alpha * x + s * n)
    torch.testing.assert_close((x - c_skip * y) / c_out, v_from_x0_eps(x, n, alpha, s))


@pytest.mark.parametrize("parameterization, sigma_data", [("edm", 0.5), ("v", 1.0), ("edm", 2.0)])
@pytest.mark.parametrize("sigma", [0.002, 0.2, 1.0, 10.0, 700.0])
def test_network_input_and_target_have_unit_variance(sigma, parameterization, sigma_data):
    generator = torch.Generator().manual_seed(5)
    count = 200_000  # the variance estimate's standard error is sqrt(2 / count) = 0.003
    x = sigma_data * torch.randn(count, generator=generator, dtype=torch.float64)
    n = torch.randn(count, generator=generator, dtype=torch.float64)
    y = x + sigma * n
    c_skip, c_out, c_in, _ = edm_preconditioning(sigma, sigma_data, parameterization=parameterization)
    assert (c_in * y).var().item() == pytest.approx(1.0, abs=0.02)
    assert ((x - c_skip * y) / c_out).var().item() == pytest.approx(1.0, abs=0.02)
    # c_skip y is the least-squares estimate: its residual is uncorrelated with y (relative to their scales)
    residual = x - c_skip * y
    correlation = (residual * y).mean() / (residual.std() * y.std())
    assert abs(correlation.item()) < 0.02


def test_per_item_sigmas_reach_the_model_as_one_c_noise_per_item():
    y = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6))
    sigma = torch.tensor([0.5, 20.0]).view(2, 1, 1, 1, 1)
    received = []

    def model(x_in, c_noise):
        received.append(c_noise)
        return torch.ones_like(x_in)

    D = edm_denoiser(model, y, sigma, sigma_data=0.5)
    torch.testing.assert_close(received[0], torch.log(torch.tensor([0.5, 20.0])) / 4)
    for item in range(2):
        alone = edm_denoiser(lambda x_in, c: torch.ones_like(x_in), y[item:item + 1], sigma[item:item + 1],
                             sigma_data=0.5)
        torch.testing.assert_close(D[item:item + 1], alone)


# ---- the schedule and the sampler ----------------------------------------------------------------------------------

@pytest.mark.parametrize("rho", [1.0, 3.0, 7.0])
def test_karras_sigmas_are_evenly_spaced_in_sigma_to_the_one_over_rho(rho):
    sigmas = karras_sigmas(10, 0.01, 80.0, rho)
    assert sigmas.shape == (11,) and sigmas.dtype == torch.float64
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-2].item() == pytest.approx(0.01)
    assert sigmas[-1] == 0 and torch.all(sigmas[1:] < sigmas[:-1])
    gaps = sigmas[:-1].pow(1 / rho).diff()
    torch.testing.assert_close(gaps, gaps[0].expand(9))
    torch.testing.assert_close(karras_sigmas(10, 0.01, 80.0, rho, append_zero=False), sigmas[:-1])


def test_one_step_goes_from_sigma_max_straight_to_zero():
    torch.testing.assert_close(karras_sigmas(1, 0.002, 700.0), torch.tensor([700.0, 0.0], dtype=torch.float64))


def test_euler_transports_gaussian_noise_onto_gaussian_data():
    # with the exact denoiser of N(0, sigma_data^2) data (F = 0), the ODE scales y by sqrt(sigma^2 + sigma_data^2):
    # from y_0 = sqrt(sigma_max^2 + 1) n it ends at n exactly; Euler's error is first order, ~ 1 / steps
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7), dtype=torch.float64)

    def zero_network(x_in, c_noise):
        return torch.zeros_like(x_in)

    errors = [(sample_euler_edm(zero_network, noise, num_steps=steps, progress=False) - noise).abs().max().item()
              / noise.abs().max().item() for steps in (25, 100, 400)]
    assert errors[0] < 0.2  # 25 Euler steps shrink the sample by 15%
    for coarse, fine in zip(errors[:-1], errors[1:]):
        assert 0.2 < fine / coarse < 0.3  # 4 times the steps, a quarter of the error


def test_svd_start_hands_the_network_the_standard_normal_noise_itself():
    # y_0 = sqrt(sigma_max^2 + 1) n (diffusers' init_noise_sigma for "leading") and c_in = 1 / sqrt(sigma_max^2 + 1)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    first_inputs = []

    def model(x_in, c_noise):
        if not first_inputs:
            first_inputs.append(x_in)
        return torch.zeros_like(x_in)

    sample_euler_edm(model, noise, num_steps=2, progress=False)
    torch.testing.assert_close(first_inputs[0], noise, rtol=1e-12, atol=1e-12)


def test_sampler_keeps_the_dtype_and_starts_at_init_noise_sigma():
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8)).to(torch.bfloat16)
    first_inputs = []

    def model(x_in, c_noise):
        if not first_inputs:
            first_inputs.append(x_in)
        return torch.zeros_like(x_in)

    out = sample_euler_edm(model, noise, num_steps=3, init_noise_sigma=700.0, progress=False)
    assert out.dtype == torch.bfloat16
    assert first_inputs[0].dtype == torch.float32  # the steps run in float32 at least
    torch.testing.assert_close(first_inputs[0], noise.float() * 700.0 / math.sqrt(700.0**2 + 1))


# ---- refusals ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"num_steps": 0}, r"num_steps must be a positive int, got 0"),
    ({"sigma_min": 0.0}, r"sigma_min must be a finite number > 0, got 0.0"),
    ({"sigma_min": -1.0}, r"sigma_min must be a finite number > 0, got -1.0"),
    ({"sigma_max": 0.002}, r"sigma_max must be > sigma_min, got sigma_max = 0.002 and sigma_min = 0.002"),
    ({"sigma_max": 0.001}, r"sigma_max must be > sigma_min"),
    ({"sigma_max": math.inf}, r"sigma_max must be a finite number > 0, got inf"),
    ({"rho": 0.0}, r"rho must be a finite number > 0, got 0.0"),
])
def test_karras_sigmas_refuses_bad_input_by_name(kwargs, message):
    arguments = {"num_steps": 25, "sigma_min": 0.002, "sigma_max": 700.0, "rho": 7.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        karras_sigmas(**arguments)
    with pytest.raises(ValueError, match=message):
        sample_euler_edm(lambda x_in, c: x_in, torch.zeros(SHAPE), progress=False, **kwargs)


@pytest.mark.parametrize("sigma_data", [0.0, -0.5, math.nan])
def test_sigma_data_must_be_positive(sigma_data):
    with pytest.raises(ValueError, match=r"sigma_data must be a finite number > 0"):
        edm_preconditioning(1.0, sigma_data)
    with pytest.raises(ValueError, match=r"sigma_data must be a finite number > 0"):
        sample_euler_edm(lambda x_in, c: x_in, torch.zeros(SHAPE), sigma_data=sigma_data, progress=False)


def test_preconditioning_refuses_bad_sigma_and_parameterization():
    with pytest.raises(ValueError, match=r"sigma must be > 0 \(c_noise = ln\(sigma\) / 4\), got 0.0"):
        edm_preconditioning(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"sigma must be finite"):
        edm_preconditioning(math.nan)
    with pytest.raises(TypeError, match=r"sigma must be a number or a tensor"):
        edm_preconditioning("1.0")
    with pytest.raises(ValueError, match=r"parameterization must be one of \('edm', 'v'\).*got 'eps'"):
        edm_preconditioning(1.0, parameterization="eps")


def test_denoiser_refuses_misshapen_inputs_and_outputs():
    y = torch.zeros(SHAPE)
    per_item = r"sigma must be a number, a 0-d tensor or a tensor of shape \(B, 1, 1, 1, 1\)"
    with pytest.raises(ValueError, match=per_item):
        edm_denoiser(lambda x_in, c: x_in, y, torch.ones(SHAPE[0]))
    with pytest.raises(ValueError, match=r"model_fn must return F shaped like x \(2, 4, 3, 4, 4\), got \(2, 4\)"):
        edm_denoiser(lambda x_in, c: x_in[:, :, 0, 0, 0], y, 1.0)
    with pytest.raises(ValueError, match=r"x must be \(B, C, H, W\) or \(B, C, T, H, W\)"):
        edm_denoiser(lambda x_in, c: x_in, torch.zeros(4, 4), 1.0)


def test_sampler_names_the_step_where_the_model_fails():
    def diverging_model(x_in, c_noise):
        return torch.full_like(x_in, math.nan) if c_noise[0] < 0 else torch.zeros_like(x_in)
    first_bad = next(i for i, s in enumerate(karras_sigmas(STEPS, 0.002, 700.0).tolist()) if s < 1)
    with pytest.raises(ValueError, match=rf"denoised estimate D at sigma = .* \(step {first_bad + 1} of 25\)"):
        sample_euler_edm(diverging_model, torch.zeros(SHAPE), progress=False)
    with pytest.raises(ValueError, match=r"init_noise_sigma must be a finite number > 0, got -1"):
        sample_euler_edm(diverging_model, torch.zeros(SHAPE), init_noise_sigma=-1.0, progress=False)
