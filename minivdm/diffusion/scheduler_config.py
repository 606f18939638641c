r"""A checkpoint's scheduler/scheduler_config.json, read into a noise schedule and DDIM settings.

minivdm samples every published checkpoint with its own DDIM (Song, Meng, Ermon, 2020,
arXiv:2010.02502), whatever sampler the config's ``_class_name`` names: Stable Diffusion ships
PNDMScheduler configs, SDXL EulerDiscreteScheduler ones, ModelScope a DDIMScheduler one. All of these
share DDPM's discrete noise schedule

    alpha_bar_k = prod_{i<=k} (1 - beta_i),    k = 0..N-1,

so from the config we take that schedule and the DDIM settings, read as diffusers'
``DDIMScheduler.from_config(config)`` reads them: the result retraces that scheduler step for step.

Every key is accounted for, so nothing silently samples as something else:

* ``HONOURED`` keys set the schedule or the sampler (a key the config lacks takes DDIMScheduler's
  default, except ``clip_sample``: see ``FIXED``);
* ``FIXED`` keys are options minivdm implements at one value (or a few); any other is refused by name;
* ``IRRELEVANT`` keys tune other samplers' update rules (PNDM's Runge-Kutta warm-up, DPM-Solver's
  order...) or only matter when a ``FIXED`` option is switched on: DDIM has no use for them;
* ``_``-prefixed keys are metadata (``_class_name``, ``_diffusers_version``, ``_use_default_values``);
* any other key is refused by name: minivdm does not know what it would change.

CogVideoX's two schedulers (``CogVideoXDDIMScheduler``, ``CogVideoXDPMScheduler``) share one more option,
``snr_shift_scale``: their alpha_bar is the betas' with its SNR divided by that scale, then rescaled to zero
terminal SNR (``DiscreteSchedule.from_shifted_beta_schedule``). Their missing keys take their own defaults
(``COGVIDEOX_DEFAULTS``), and their steps never clip or threshold, so ``clip_sample`` and its range change nothing.
Which solver steps the grid is the caller's choice (``minivdm.methods.text_to_video_dit``: DDIM, or the
DPM-Solver++(2M) SDE that ``CogVideoXDPMScheduler`` names); the schedule and grid read here are the same for both.
"""

from __future__ import annotations

import math

import torch

from minivdm.diffusion.schedules import BETA_SCHEDULES, TIMESTEP_SPACINGS, DiscreteSchedule, rescale_zero_terminal_snr

# CogVideoX's schedulers: key -> their default (HONOURED's keys, plus the SNR shift)
COGVIDEOX_CLASSES = frozenset({"CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"})
COGVIDEOX_DEFAULTS = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "trained_betas": None, "rescale_betas_zero_snr": False, "prediction_type": "epsilon",
    "timestep_spacing": "leading", "steps_offset": 0, "set_alpha_to_one": True, "snr_shift_scale": 3.0,
}
# options of theirs their step functions never read
COGVIDEOX_IRRELEVANT = frozenset({"clip_sample", "clip_sample_range", "sample_max_value"})

# Samplers diffusers lists as interchangeable with DDIMScheduler (its KarrasDiffusionSchedulers): they
# all use the discrete-beta schedule above. EDM schedulers (sigma schedules) and flow matching are not.
DDIM_COMPATIBLE_CLASSES = frozenset({
    "DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler",
    "HeunDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
    "DEISMultistepScheduler", "UniPCMultistepScheduler", "DPMSolverSDEScheduler",
})

# key -> DDIMScheduler's default
HONOURED = {
    "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
    "trained_betas": None, "rescale_betas_zero_snr": False, "prediction_type": "epsilon",
    "timestep_spacing": "leading", "steps_offset": 0, "set_alpha_to_one": True,
}

# key -> (the values minivdm implements, why another one is refused)
FIXED = {
    # diffusers' DDIM clamps x_hat to +-clip_sample_range but keeps the model's eps; a config without the
    # key comes from a sampler that never clips (PNDM, Euler), and SD pipelines reset it to False anyway
    "clip_sample": ((False,), "clamping x_hat is for pixel-space models; latent checkpoints ship clip_sample=false"),
    "thresholding": ((False,), "dynamic thresholding (Imagen) is not implemented"),
    "use_karras_sigmas": ((False,), "Karras et al.'s sigma spacing of the timesteps is not implemented"),
    "use_exponential_sigmas": ((False,), "exponential sigma spacing of the timesteps is not implemented"),
    "use_beta_sigmas": ((False,), "beta-distributed sigma spacing of the timesteps is not implemented"),
    "use_lu_lambdas": ((False,), "timesteps uniform in log-SNR are not implemented"),
    "use_flow_sigmas": ((False,), "flow-matching sigmas are a different noise schedule"),
    "use_dynamic_shifting": ((False,), "resolution-dependent timestep shifting is not implemented"),
    "shift_terminal": ((None,), "shifting the terminal timestep is not implemented"),
    "timestep_type": (("discrete",), "the model takes integer timesteps here, not continuous ones"),
    "lambda_min_clipped": ((-math.inf,), "truncating the timesteps at a minimum log-SNR is not implemented"),
    "variance_type": ((None, "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"),
                      "a learned variance means the model outputs 2C channels, which DDIM does not split"),
}

IRRELEVANT = frozenset({
    "skip_prk_steps",  # PNDM's Runge-Kutta warm-up
    "solver_order", "solver_type", "algorithm_type", "lower_order_final", "euler_at_final", "final_sigmas_type",
    "predict_x0", "disable_corrector", "solver_p",  # DPM-Solver, DEIS, UniPC update rules
    "interpolation_type", "noise_sampler_seed",  # Euler / LMS / DPM-SDE sigma interpolation and noise
    "sigma_min", "sigma_max", "rho", "sigma_data", "sigma_schedule",  # only with the sigma spacings refused above
    "flow_shift", "time_shift_type",  # only with flow sigmas / dynamic shifting, refused above
    "clip_sample_range",  # only with clip_sample
    "dynamic_thresholding_ratio", "sample_max_value",  # only with thresholding
})

PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


def _is_one_of(value, allowed) -> bool:
    # True == 1 in Python: a config's 1 is not its False, nor 0 its None
    return any(value is option if isinstance(option, bool) or option is None else
               (not isinstance(value, bool) and value == option) for option in allowed)


def _expect(config: dict, key: str, kinds: tuple, description: str, defaults: dict = HONOURED):
    value = config.get(key, defaults[key])
    if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
        raise ValueError(f"scheduler config has {key}={value!r}; expected {description}")
    return value


def _snr_shift_scale(config: dict) -> float:
    scale = _expect(config, "snr_shift_scale", (int, float), "a number > 0", COGVIDEOX_DEFAULTS)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scheduler config has snr_shift_scale={scale!r}; expected a number > 0")
    return float(scale)


def read_scheduler_config(config: dict) -> dict:
    """The schedule and DDIM settings of a diffusers scheduler config: a dict with ``schedule``
    (a ``DiscreteSchedule``), ``prediction_type`` ("eps", "v", "x0"), ``timestep_spacing``,
    ``steps_offset`` and ``set_alpha_to_one``. Refuses, by name, every option it cannot honour."""
    if not isinstance(config, dict):
        raise TypeError(f"a scheduler config must be a dict (scheduler_config.json), got {type(config).__name__}")
    # keys an in-memory config (``pipe.scheduler.config``) lists here were never set: as in diffusers'
    # from_config they take DDIMScheduler's defaults, or CogVideoX's for its schedulers (saved config.json files
    # do not carry the list)
    unset = config.get("_use_default_values", [])
    config = {key: value for key, value in config.items() if key not in unset}
    class_name = config.get("_class_name", "DDIMScheduler")
    cogvideox = class_name in COGVIDEOX_CLASSES
    if class_name not in DDIM_COMPATIBLE_CLASSES and not cogvideox:
        raise ValueError(f"scheduler config is a {class_name}, whose noise schedule minivdm's DDIM does not share; "
                         f"supported: a config of {sorted(DDIM_COMPATIBLE_CLASSES | COGVIDEOX_CLASSES)}")
    defaults = COGVIDEOX_DEFAULTS if cogvideox else HONOURED
    for key, value in config.items():
        if key.startswith("_") or key in defaults or key in IRRELEVANT or (cogvideox and key in COGVIDEOX_IRRELEVANT):
            continue
        if key not in FIXED:
            known = sorted({*defaults, *FIXED, *IRRELEVANT, *(COGVIDEOX_IRRELEVANT if cogvideox else ())})
            raise ValueError(f"scheduler config has {key}={value!r}, an option minivdm does not know: refused "
                             f"rather than ignored (known to a {class_name} config: {known})")
        allowed, why = FIXED[key]
        if not _is_one_of(value, allowed):
            only = f"{key}={allowed[0]!r}" if len(allowed) == 1 else f"{key} in {allowed}"
            raise ValueError(f"scheduler config has {key}={value!r}; minivdm's DDIM supports only {only} ({why})")

    num_train_timesteps = _expect(config, "num_train_timesteps", (int,), "a positive int", defaults)
    beta_schedule = _expect(config, "beta_schedule", (str,), f"one of {BETA_SCHEDULES}", defaults)
    beta_start = _expect(config, "beta_start", (int, float), "a number", defaults)
    beta_end = _expect(config, "beta_end", (int, float), "a number", defaults)
    rescale = _expect(config, "rescale_betas_zero_snr", (bool,), "true or false", defaults)
    trained_betas = config.get("trained_betas")
    if trained_betas is not None:
        # diffusers then ignores beta_schedule, beta_start and beta_end
        if not isinstance(trained_betas, (list, tuple)) or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) for b in trained_betas):
            raise ValueError(f"scheduler config has trained_betas of type {type(trained_betas).__name__}; expected a list of numbers")
        if len(trained_betas) != num_train_timesteps:
            raise ValueError(f"scheduler config has {len(trained_betas)} trained_betas but num_train_timesteps="
                             f"{num_train_timesteps}: they must agree")
        betas = torch.tensor(trained_betas, dtype=torch.float32)
        if cogvideox:
            schedule = DiscreteSchedule.from_shifted_betas(betas, _snr_shift_scale(config), rescale)
        else:
            if rescale:
                betas = rescale_zero_terminal_snr(betas)
            schedule = DiscreteSchedule(betas, "trained_betas" + (", zero terminal SNR" if rescale else ""))
    else:
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"scheduler config has beta_schedule={beta_schedule!r}; minivdm supports {BETA_SCHEDULES}")
        if cogvideox:
            schedule = DiscreteSchedule.from_shifted_beta_schedule(beta_schedule, beta_start, beta_end,
                                                                   num_train_timesteps, rescale, _snr_shift_scale(config))
        else:
            schedule = DiscreteSchedule.from_beta_schedule(beta_schedule, beta_start, beta_end, num_train_timesteps,
                                                           rescale)

    prediction_type = _expect(config, "prediction_type", (str,), f"one of {sorted(PREDICTION_TYPES)}", defaults)
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"scheduler config has prediction_type={prediction_type!r}; expected one of {sorted(PREDICTION_TYPES)}")
    spacing = _expect(config, "timestep_spacing", (str,), f"one of {TIMESTEP_SPACINGS}", defaults)
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"scheduler config has timestep_spacing={spacing!r}; minivdm supports {TIMESTEP_SPACINGS}")
    steps_offset = _expect(config, "steps_offset", (int,), "an int >= 0", defaults)
    if steps_offset < 0:
        raise ValueError(f"scheduler config has steps_offset={steps_offset}; expected an int >= 0")
    return {
        "schedule": schedule,
        "prediction_type": PREDICTION_TYPES[prediction_type],
        "timestep_spacing": spacing,
        "steps_offset": steps_offset,
        "set_alpha_to_one": _expect(config, "set_alpha_to_one", (bool,), "true or false", defaults),
    }
