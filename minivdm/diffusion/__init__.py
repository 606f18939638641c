"""Diffusion core: schedules, parameterizations, forward process, samplers, guidance, losses."""

from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for, broadcast_per_item
from minivdm.diffusion.guidance import classifier_free_guidance, guided_model
from minivdm.diffusion.losses import diffusion_loss
from minivdm.diffusion.parameterization import (
    PREDICTION_TYPES,
    eps_from_v,
    eps_from_x0,
    predictions_to_x0_eps,
    training_target,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from minivdm.diffusion.samplers import ddim_invert, ddim_step, ddim_step_angular, ddpm_step, sample
from minivdm.diffusion.schedules import (
    BETA_SCHEDULES,
    TIMESTEP_SPACINGS,
    CosineSchedule,
    DiscreteSchedule,
    NoiseSchedule,
    ScaledLinearSchedule,
    rescale_zero_terminal_snr,
)
