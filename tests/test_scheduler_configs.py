"""A checkpoint's scheduler_config.json: every key honoured (and retracing diffusers' DDIM) or refused by name."""

import inspect
import math

import diffusers
import pytest
import torch
from diffusers import DDIMScheduler
from test_diffusion_parity import SHAPE, TOLERANCE, ddim_parity, table_model

from minivdm.diffusion import DiscreteSchedule, sample
from minivdm.diffusion.scheduler_config import (
    DDIM_COMPATIBLE_CLASSES,
    FIXED,
    HONOURED,
    IRRELEVANT,
    read_scheduler_config,
)
from minivdm.methods.text_to_image import SamplerSettings

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)  # noqa: C408

# In the shape of the published files (keys as their diffusers versions saved them)
PUBLISHED = {
    "sd15 (PNDM)": {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", **SD, "set_alpha_to_one": False,
                    "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False},
    "sd21 (DDIM, v)": {"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", **SD, "clip_sample": False,
                       "prediction_type": "v_prediction", "set_alpha_to_one": False, "skip_prk_steps": True,
                       "steps_offset": 1, "trained_betas": None},
    "modelscope (DDIM)": {"_class_name": "DDIMScheduler", "_diffusers_version": "0.15.0.dev0", **SD, "clip_sample": False,
                          "prediction_type": "epsilon", "set_alpha_to_one": False, "skip_prk_steps": True,
                          "steps_offset": 1, "trained_betas": None},
    "sdxl (Euler)": {"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.19.0.dev0", **SD,
                     "clip_sample": False, "interpolation_type": "linear", "prediction_type": "epsilon",
                     "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
                     "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False},
    "zero-SNR v (DDIM, trailing)": {"_class_name": "DDIMScheduler", **SD, "clip_sample": False,
                                    "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                                    "timestep_spacing": "trailing", "set_alpha_to_one": False, "steps_offset": 1},
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_configs_retrace_ddim_from_config(name):
    config = PUBLISHED[name]
    reference = DDIMScheduler.from_config(config)
    for steps in (10, 50):
        assert ddim_parity(reference, config, steps) <= TOLERANCE


def test_ddim_compatible_classes_and_every_option_they_have_is_classified():
    from diffusers.schedulers.scheduling_utils import KarrasDiffusionSchedulers

    # EDM's sigma schedule is not alpha_bar_k = prod (1 - beta_i): refused
    assert DDIM_COMPATIBLE_CLASSES == {e.name for e in KarrasDiffusionSchedulers} - {"EDMEulerScheduler"}
    known = {*HONOURED, *FIXED, *IRRELEVANT}
    assert not (set(HONOURED) & set(FIXED)) and not (set(HONOURED) & IRRELEVANT) and not (set(FIXED) & IRRELEVANT)
    for class_name in sorted(DDIM_COMPATIBLE_CLASSES):
        options = inspect.signature(getattr(diffusers, class_name).__init__).parameters
        unclassified = {o for o, p in options.items() if p.kind is p.POSITIONAL_OR_KEYWORD} - {"self"} - known
        assert not unclassified, (class_name, unclassified)
        for key, (allowed, _) in FIXED.items():  # each class's default is one we implement (DDIM/DDPM clip: below)
            if key in options and key != "clip_sample":
                assert options[key].default in allowed or (options[key].default != options[key].default), (class_name, key)


@pytest.mark.parametrize("class_name", sorted(DDIM_COMPATIBLE_CLASSES))
def test_every_compatible_class_default_config_samples_as_ddim_from_config(class_name):
    """A config saved by any compatible sampler (defaults: linear betas, some 'linspace' or 'trailing')."""
    # as saved in scheduler_config.json: every init option at its default (read off the signature: some
    # classes need scipy / torchsde to be built)
    options = inspect.signature(getattr(diffusers, class_name).__init__).parameters.values()
    config = {"_class_name": class_name, **{o.name: o.default for o in options
                                            if o.kind is o.POSITIONAL_OR_KEYWORD and o.name != "self"}}
    if "clip_sample" in config:
        config["clip_sample"] = False
    # a key the config lacks takes DDIMScheduler's default, except clip_sample (False: see FIXED)
    reference = DDIMScheduler.from_config(config, clip_sample=False)
    assert ddim_parity(reference, config, 10) <= TOLERANCE
    # an in-memory config lists the keys it never set: those take DDIM's defaults, as in from_config
    try:
        in_memory = dict(getattr(diffusers, class_name)().config)
    except ImportError:
        return
    assert ddim_parity(DDIMScheduler.from_config(in_memory, clip_sample=False), in_memory, 10) <= TOLERANCE


def test_missing_keys_take_ddim_defaults_except_clip_sample():
    settings = SamplerSettings.from_scheduler_config({})
    assert torch.equal(settings.schedule.alphas_cumprod, DDIMScheduler().alphas_cumprod)  # linear 1e-4..0.02
    assert (settings.prediction_type, settings.timestep_spacing, settings.steps_offset, settings.set_alpha_to_one) == \
        ("eps", "leading", 0, True)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_inference_timesteps_match_diffusers_for_every_step_count(spacing):
    ours = DiscreteSchedule.from_beta_schedule("linear", 1e-4, 0.02)
    theirs = DDIMScheduler(timestep_spacing=spacing, steps_offset=1 if spacing == "leading" else 0)
    for steps in range(1, 1001):
        if spacing == "leading" and steps == 1000:
            continue  # 999 + steps_offset would be timestep 1000: refused (below)
        theirs.set_timesteps(steps)
        expected = theirs.timesteps
        if len(expected) == steps + 1:  # diffusers' float arange sometimes adds a spurious timestep -1
            assert spacing == "trailing" and expected[-1] == -1
            expected = expected[:-1]
        assert torch.equal(ours.inference_timesteps(steps, 1 if spacing == "leading" else 0, spacing), expected), steps
    with pytest.raises(ValueError, match="past the last trained timestep 999"):
        ours.inference_timesteps(1000, 1, "leading")


@pytest.mark.parametrize("beta_schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_beta_tables_are_diffusers_bit_for_bit(beta_schedule, zero_snr):
    theirs = DDIMScheduler(beta_schedule=beta_schedule, rescale_betas_zero_snr=zero_snr, beta_start=0.00085, beta_end=0.012)
    ours = DiscreteSchedule.from_beta_schedule(beta_schedule, 0.00085, 0.012, 1000, zero_snr)
    assert torch.equal(ours.alphas_cumprod, theirs.alphas_cumprod)
    if zero_snr:  # Lin et al.: pure noise at the last timestep, the first one unchanged
        plain = DiscreteSchedule.from_beta_schedule(beta_schedule, 0.00085, 0.012, 1000)
        assert ours.alphas_cumprod[-1] == 0 and ours.log_snr(torch.tensor(1.0)).item() == -math.inf
        assert ours.alphas_cumprod[0] == pytest.approx(plain.alphas_cumprod[0].item(), rel=1e-6)


def test_eps_prediction_with_zero_terminal_snr_is_refused_before_the_first_model_call():
    settings = SamplerSettings.from_scheduler_config({**SD, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"})
    times, step_ends = settings.times_and_step_ends(10)
    calls = []

    def model_fn(z_t, t):
        calls.append(t)
        return z_t

    with pytest.raises(ValueError, match=r"prediction_type='eps' at t = 1, where alpha_t = 0 \(zero terminal SNR"):
        sample(model_fn, torch.randn(SHAPE), settings.schedule, times, step_ends=step_ends, prediction_type="eps",
               progress=False)
    assert not calls
    # diffusers' DDIM turns it into NaN/inf, which is what the refusal prevents
    scheduler = DDIMScheduler(**SD, rescale_betas_zero_snr=True, timestep_spacing="trailing", clip_sample=False)
    scheduler.set_timesteps(10)
    z = torch.randn(SHAPE)
    step = scheduler.step(table_model(scheduler.alphas_cumprod, "epsilon")(z, scheduler.timesteps[:1].expand(2)),
                          scheduler.timesteps[0], z)
    assert not torch.isfinite(step.prev_sample).all()
    # with 'leading' spacing the first timestep is below the last one: well defined, and allowed
    leading = SamplerSettings.from_scheduler_config({**SD, "rescale_betas_zero_snr": True, "clip_sample": False})
    sample(model_fn, torch.randn(SHAPE), leading.schedule, leading.times(10), prediction_type="eps", progress=False)


REFUSED = [
    ({"clip_sample": True}, r"clip_sample=True; minivdm's DDIM supports only clip_sample=False"),
    ({"thresholding": True}, r"thresholding=True; .*dynamic thresholding"),
    ({"use_karras_sigmas": True}, r"use_karras_sigmas=True"),
    ({"use_exponential_sigmas": True}, r"use_exponential_sigmas=True"),
    ({"use_beta_sigmas": True}, r"use_beta_sigmas=True"),
    ({"use_lu_lambdas": True}, r"use_lu_lambdas=True"),
    ({"use_flow_sigmas": True}, r"use_flow_sigmas=True"),
    ({"use_dynamic_shifting": True}, r"use_dynamic_shifting=True"),
    ({"timestep_type": "continuous"}, r"timestep_type='continuous'"),
    ({"lambda_min_clipped": -5.1}, r"lambda_min_clipped=-5.1"),
    ({"shift_terminal": 0.1}, r"shift_terminal=0.1"),
    ({"variance_type": "learned_range"}, r"variance_type='learned_range'.*2C channels"),
    ({"clip_sample": 0}, r"clip_sample=0"),  # 0 is not False
    ({"timestep_spacing": "uniform"}, r"timestep_spacing='uniform'; minivdm supports"),
    ({"beta_schedule": "sigmoid"}, r"beta_schedule='sigmoid'; minivdm supports"),
    ({"prediction_type": "flow"}, r"prediction_type='flow'"),
    ({"steps_offset": "1"}, r"steps_offset='1'; expected an int"),
    ({"steps_offset": -1}, r"steps_offset=-1"),
    ({"set_alpha_to_one": 1}, r"set_alpha_to_one=1; expected true or false"),
    ({"rescale_betas_zero_snr": "yes"}, r"rescale_betas_zero_snr='yes'"),
    ({"trained_betas": [0.01] * 10}, r"10 trained_betas but num_train_timesteps=1000"),
    ({"trained_betas": "0.01"}, r"trained_betas of type str"),
    ({"snr_shift_scale": 3.0}, r"snr_shift_scale=3.0, an option minivdm does not know"),
    ({"_class_name": "FlowMatchEulerDiscreteScheduler"}, r"FlowMatchEulerDiscreteScheduler, whose noise schedule"),
    ({"_class_name": "EDMEulerScheduler"}, r"EDMEulerScheduler, whose noise schedule"),
]


@pytest.mark.parametrize("options, match", REFUSED, ids=[next(iter(o)) for o, _ in REFUSED])
def test_options_minivdm_cannot_honour_are_refused_by_name(options, match):
    with pytest.raises(ValueError, match=match):
        read_scheduler_config({**SD, "clip_sample": False, **options})


def test_irrelevant_options_do_not_change_the_settings():
    plain = read_scheduler_config({**SD, "clip_sample": False})
    noisy = read_scheduler_config({**SD, "clip_sample": False, "skip_prk_steps": True, "solver_order": 3,
                                   "algorithm_type": "sde-dpmsolver++", "interpolation_type": "log_linear",
                                   "clip_sample_range": 2.0, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 3.0})
    assert torch.equal(plain.pop("schedule").alphas_cumprod, noisy.pop("schedule").alphas_cumprod) and plain == noisy
