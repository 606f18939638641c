"""Parity with diffusers: for the same model outputs our samplers retrace DDIMScheduler / DDPMScheduler.

A fixed non-linear "model" maps (z_t, timestep) to a prediction; both loops call it on their own
z_t, so any difference in a step compounds over the 50-step trajectory.
"""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from minivdm.diffusion import ScaledLinearSchedule, sample

SHAPE = (2, 4, 3, 8, 8)  # (B, C, T, H, W)
TOLERANCE = 1e-5


ALPHAS_CUMPROD = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod


def make_fake_model(prediction_type: str):
    """A deterministic stand-in for a U-Net, computed independently of minivdm.

    It predicts x as the exact denoiser of data ~ N(0, 0.5^2) plus a non-linear perturbation, and
    returns that in the requested parameterization, so trajectories stay in a realistic range.
    """
    return table_model(ALPHAS_CUMPROD, prediction_type)


def run_diffusers(scheduler, z, steps, seed=None, **step_kwargs):
    fake_model = make_fake_model(scheduler.config.prediction_type)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    trajectory = []
    for timestep in scheduler.timesteps:
        prediction = fake_model(z, timestep.expand(z.shape[0]))
        z = scheduler.step(prediction, timestep, z, generator=generator, **step_kwargs).prev_sample
        trajectory.append(z)
    return scheduler.timesteps, trajectory


def run_ours(schedule, z, times, seed=None, **kwargs):
    fake_model = make_fake_model({"eps": "epsilon", "v": "v_prediction", "x0": "sample"}[kwargs["prediction_type"]])

    def model_fn(z_t, t):
        return fake_model(z_t, schedule.timestep_from_t(t))

    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    trajectory = []
    sample(model_fn, z, schedule, times, generator=generator, progress=False, trajectory=trajectory, **kwargs)
    return trajectory


def max_diff(ours, theirs):
    assert len(ours) == len(theirs)
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 0.5), ("ddim_angular", 0.0)])
def test_ddim_matches_diffusers_step_for_step(prediction_type, eta, sampler):
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type=prediction_type, clip_sample=False)
    schedule = ScaledLinearSchedule()
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    timesteps, theirs = run_diffusers(scheduler, z, 50, seed=7, eta=eta)
    times = schedule.leading_times(50)
    assert torch.equal(schedule.timestep_from_t(times[:-1]), timesteps)
    ours = run_ours(schedule, z, times, seed=7, sampler=sampler, eta=eta,
                    prediction_type={"epsilon": "eps", "v_prediction": "v"}[prediction_type])
    assert max_diff(ours, theirs) <= TOLERANCE


def test_ddim_matches_stable_diffusions_scheduler_config():
    """SD ships steps_offset=1 and set_alpha_to_one=False: the last step lands on timestep 0, not on data."""
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              steps_offset=1, set_alpha_to_one=False)
    schedule = ScaledLinearSchedule()
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    _, theirs = run_diffusers(scheduler, z, 50)
    assert max(z.abs().max().item() for z in theirs) < 10  # a realistic range, where float32 rounding is small
    ours = run_ours(schedule, z, schedule.leading_times(50, steps_offset=1, set_alpha_to_one=False), prediction_type="eps")
    assert max_diff(ours, theirs) <= TOLERANCE


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_ddpm_matches_diffusers_step_for_step(prediction_type):
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              prediction_type=prediction_type, clip_sample=False, variance_type="fixed_small")
    schedule = ScaledLinearSchedule()
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    _, theirs = run_diffusers(scheduler, z, 50, seed=3)
    ours = run_ours(schedule, z, schedule.leading_times(50), seed=3, sampler="ddpm",
                    prediction_type={"epsilon": "eps", "v_prediction": "v", "sample": "x0"}[prediction_type])
    assert max_diff(ours, theirs) <= TOLERANCE


# --- every option of a scheduler config, read by SamplerSettings, against DDIMScheduler(**options) ---------------

def table_model(alphas_cumprod: torch.Tensor, prediction_type: str):
    """The stand-in for any alpha_bar table (diffusers' own): the exact denoiser of N(0, 0.5^2) data plus a
    non-linear perturbation, finite at alpha_bar = 0 (zero SNR)."""

    def model(z_t: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        alpha_bar = alphas_cumprod[timestep.long()].view(-1, 1, 1, 1, 1)
        alpha, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        x_hat = alpha * 0.25 / (alpha_bar * 0.25 + sigma**2) * z_t + 0.1 * torch.tanh(2 * z_t + timestep.view(-1, 1, 1, 1, 1) / 500)
        eps_hat = (z_t - alpha * x_hat) / sigma
        return {"epsilon": eps_hat, "sample": x_hat, "v_prediction": alpha * eps_hat - sigma * x_hat}[prediction_type]

    return model


def ddim_parity(scheduler: DDIMScheduler, config: dict, steps: int, seed: int = 0) -> float:
    """Max |z_ours - z_diffusers| over a DDIM trajectory: diffusers' ``scheduler``, ours read from ``config``."""
    from minivdm.methods.text_to_image import SamplerSettings

    settings = SamplerSettings.from_scheduler_config(config)
    fake_model = table_model(scheduler.alphas_cumprod, scheduler.config.prediction_type)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
    scheduler.set_timesteps(steps)
    theirs, z_theirs = [], z
    for timestep in scheduler.timesteps:
        z_theirs = scheduler.step(fake_model(z_theirs, timestep.expand(z.shape[0])), timestep, z_theirs).prev_sample
        theirs.append(z_theirs)
    assert all(torch.isfinite(z_).all() for z_ in theirs)
    times, step_ends = settings.times_and_step_ends(steps)
    assert torch.equal(settings.schedule.timestep_from_t(times[:-1]), scheduler.timesteps)

    def model_fn(z_t, t):
        return fake_model(z_t, settings.schedule.timestep_from_t(t))

    ours = []
    sample(model_fn, z, settings.schedule, times, step_ends=step_ends, prediction_type=settings.prediction_type,
           progress=False, trajectory=ours)
    return max_diff(ours, theirs)


def config_parity(options: dict, steps: int) -> float:
    """DDIMScheduler(**options) against our reading of the config.json it saves."""
    scheduler = DDIMScheduler(**{"clip_sample": False, **options})
    return ddim_parity(scheduler, {"_class_name": "DDIMScheduler", **dict(scheduler.config)}, steps)


OPTIONS = {
    "linear": dict(beta_schedule="linear"),
    "scaled_linear": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    "squaredcos_cap_v2": dict(beta_schedule="squaredcos_cap_v2"),
    "trained_betas": dict(trained_betas=torch.linspace(5e-4, 0.015, 1000).tolist()),  # not the default linear table
    "leading+steps_offset=1": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1),
    "set_alpha_to_one=False": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, set_alpha_to_one=False),
    "set_alpha_to_one=False+offset=1": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                            set_alpha_to_one=False, steps_offset=1),
    "trailing": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="trailing"),
    "linspace": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="linspace"),
    "linspace+set_alpha_to_one=False": dict(timestep_spacing="linspace", set_alpha_to_one=False),
    "v_prediction": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction"),
    "sample_prediction": dict(beta_schedule="linear", prediction_type="sample"),
    "zero_snr+v+trailing": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="trailing"),
    "zero_snr+v+linspace": dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                rescale_betas_zero_snr=True, prediction_type="v_prediction", timestep_spacing="linspace"),
    "zero_snr+v+leading": dict(rescale_betas_zero_snr=True, prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2"),
}


@pytest.mark.parametrize("steps", [10, 50, 7])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_every_scheduler_option_retraces_diffusers_ddim(name, steps):
    """7 steps do not divide 1000: trailing / linspace then land each step off the next evaluated timestep."""
    assert config_parity(OPTIONS[name], steps) <= TOLERANCE
