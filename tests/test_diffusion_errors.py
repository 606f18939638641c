"""Bad input to the diffusion core's public functions is refused with a message that names the fix,
instead of broadcasting along the wrong axis or flowing through as NaN (or as finite garbage)."""

import pytest
import torch

from minivdm.diffusion import (
    CosineSchedule,
    ScaledLinearSchedule,
    add_noise,
    alpha_sigma_for,
    broadcast_per_item,
    classifier_free_guidance,
    ddim_invert,
    ddim_step,
    ddim_step_angular,
    ddpm_step,
    diffusion_loss,
    guided_model,
    predictions_to_x0_eps,
    sample,
    training_target,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)

NAN = float("nan")
COSINE = CosineSchedule()
VIDEO = torch.randn(2, 3, 4, 5, 2)  # (B, C, T, H, W) with W == B: a (B,) alpha would broadcast silently along W
ALPHA_B = torch.tensor([0.6, 0.8])  # per item, but (B,)
ALPHA_ITEMS = ALPHA_B.view(2, 1, 1, 1, 1)
SIGMA_ITEMS = (1 - ALPHA_ITEMS**2).sqrt()
TIMES = COSINE.uniform_times(3)


def identity_model(z_t, t):
    return z_t


def nan_after_first_step():
    calls = []

    def model_fn(z_t, t):
        calls.append(t)
        return z_t * NAN if len(calls) == 2 else z_t

    return model_fn


def conditional_model(z_t, t, condition):
    return z_t


BAD_INPUTS = [
    # broadcasting traps: per-item values as (B,) against (B, C, T, H, W)
    ("x0_from_eps (B,) alpha", lambda: x0_from_eps(VIDEO, VIDEO, ALPHA_B, SIGMA_ITEMS),
     r"alpha must be a number, a 0-d tensor or a tensor of shape \(B, 1, 1, 1, 1\) = \(2, 1, 1, 1, 1\) .* got shape "
     r"\(2,\) - per-item values of shape \(B,\) broadcast along the last axis"),
    ("v_from_x0_eps (B,) sigma", lambda: v_from_x0_eps(VIDEO, VIDEO, ALPHA_ITEMS, ALPHA_B), r"sigma must be .* got shape \(2,\)"),
    ("x0_from_v (B,1,1,1) alpha on a video", lambda: x0_from_v(VIDEO, VIDEO, ALPHA_B.view(2, 1, 1, 1), SIGMA_ITEMS),
     r"alpha must be .* \(2, 1, 1, 1, 1\) .* got shape \(2, 1, 1, 1\)"),
    ("predictions_to_x0_eps (B,) alpha", lambda: predictions_to_x0_eps(VIDEO, VIDEO, ALPHA_B, SIGMA_ITEMS, "v"), r"alpha must be"),
    ("training_target (B,) alpha", lambda: training_target(VIDEO, VIDEO, ALPHA_B, SIGMA_ITEMS, "eps"), r"alpha must be"),
    ("ddim_step (B,) alpha_s", lambda: ddim_step(VIDEO, VIDEO, ALPHA_ITEMS, SIGMA_ITEMS, ALPHA_B, SIGMA_ITEMS, "v"),
     r"alpha_s must be .* got shape \(2,\)"),
    ("ddpm_step (B,) sigma_s", lambda: ddpm_step(VIDEO, VIDEO, ALPHA_ITEMS, SIGMA_ITEMS, ALPHA_ITEMS, ALPHA_B, "v"),
     r"sigma_s must be"),
    ("ddim_step_angular (B,) phi", lambda: ddim_step_angular(VIDEO, VIDEO, ALPHA_B, ALPHA_ITEMS), r"phi_t must be .* got shape \(2,\)"),
    ("broadcast_per_item (B, 1)", lambda: broadcast_per_item(ALPHA_B.view(2, 1), VIDEO), r"values must be \(B,\) = \(2,\)"),
    ("broadcast_per_item wrong B", lambda: broadcast_per_item(torch.rand(3), VIDEO), r"one entry per batch item: got 3, the batch has 2"),
    # mismatched batch sizes
    ("ddim_step prediction of 1 item", lambda: ddim_step(VIDEO, VIDEO[:1], 0.6, 0.8, 0.8, 0.6, "v"),
     r"z_t and v must have the same shape, got \(2, 3, 4, 5, 2\) and \(1, 3, 4, 5, 2\)"),
    ("ddim_step noise of 1 item", lambda: ddim_step(VIDEO, VIDEO, 0.6, 0.8, 0.8, 0.6, "v", 0.5, VIDEO[:1]),
     r"z_t and noise must have the same shape"),
    ("ddim_step alpha of 3 items", lambda: ddim_step(VIDEO, VIDEO, torch.rand(3, 1, 1, 1, 1), 0.8, 0.8, 0.6, "v"),
     r"alpha must be .* got shape \(3, 1, 1, 1, 1\)"),
    ("add_noise t (B, 1)", lambda: add_noise(VIDEO, torch.rand(2, 1), COSINE), r"t must be \(B,\) = \(2,\), one time per batch item"),
    ("diffusion_loss prediction (B, 1, ...)", lambda: diffusion_loss(lambda z, t: z[:, :1], VIDEO, COSINE),
     r"model_fn's prediction and x must have the same shape, got \(2, 1, 4, 5, 2\) and \(2, 3, 4, 5, 2\)"),
    ("guided_model condition of 1 item", lambda: guided_model(conditional_model, torch.zeros(1, 7), torch.zeros(1, 7), 3.0)(
        VIDEO, torch.rand(2)), r"z_t has 2, t has 2, condition has 1 \(repeat the condition for each sample\)"),
    ("guided_model t of 1 item", lambda: guided_model(conditional_model, torch.zeros(2, 7), torch.zeros(2, 7), 3.0)(
        VIDEO, torch.rand(1)), r"z_t has 2, t has 1"),
    # NaN / inf
    ("add_noise NaN t", lambda: add_noise(VIDEO, torch.tensor([0.5, NAN]), COSINE), r"t must be finite"),
    ("add_noise NaN t (discrete table)", lambda: add_noise(VIDEO, torch.tensor([0.5, NAN]), ScaledLinearSchedule()), r"t must be finite"),
    ("schedule.alpha_sigma NaN", lambda: ScaledLinearSchedule().alpha_sigma(torch.tensor([NAN])), r"t must be finite times in \[0, 1\]"),
    ("add_noise NaN x", lambda: add_noise(torch.where(VIDEO > 2, NAN, VIDEO).index_fill(0, torch.tensor([0]), NAN),
                                          torch.rand(2), COSINE), r"x must be finite, got \d+ NaN/inf value"),
    ("add_noise inf noise", lambda: add_noise(VIDEO, torch.rand(2), COSINE, noise=VIDEO / 0), r"noise must be finite"),
    ("sample NaN times", lambda: sample(identity_model, VIDEO, COSINE, torch.tensor([1.0, NAN, 0.0], dtype=torch.float64),
                                        progress=False), r"times must be finite"),
    ("sample NaN z_start", lambda: sample(identity_model, VIDEO * NAN, COSINE, TIMES, progress=False), r"z_start must be finite"),
    ("sample NaN prediction", lambda: sample(nan_after_first_step(), VIDEO, COSINE, TIMES, progress=False),
     r"model_fn's prediction at t = 0.6667 \(step 2 of 3\) must be finite"),
    ("ddim_invert NaN x", lambda: ddim_invert(identity_model, VIDEO * NAN, COSINE, TIMES, progress=False), r"x must be finite"),
    ("x0_from_eps NaN alpha", lambda: x0_from_eps(VIDEO, VIDEO, torch.tensor(NAN), 0.5), r"alpha must be finite"),
    ("ddim_step NaN sigma_s", lambda: ddim_step(VIDEO, VIDEO, 0.6, 0.8, 0.8, NAN, "v"), r"sigma_s must be finite, got nan"),
    ("classifier_free_guidance NaN scale", lambda: classifier_free_guidance(VIDEO, VIDEO, NAN), r"guidance_scale must be in"),
    # division by zero where the parameterization is undefined
    ("x0_from_eps alpha = 0", lambda: x0_from_eps(VIDEO, VIDEO, 0.0, 1.0),
     r"x = \(z_t - sigma eps\) / alpha divides by alpha = 0 .*zero terminal SNR"),
    ("ddim_invert x0-model at t = 0", lambda: ddim_invert(identity_model, VIDEO, ScaledLinearSchedule(), TIMES,
                                                          prediction_type="x0", progress=False), r"divides by sigma = 0"),
    # integer dtypes where floats belong
    ("x0_from_v integer alpha", lambda: x0_from_v(VIDEO, VIDEO, torch.tensor([1, 0]).view(2, 1, 1, 1, 1), SIGMA_ITEMS),
     r"alpha must have a floating dtype, got torch.int64 \(an integer alpha is almost always a timestep"),
    ("x0_from_v integer v", lambda: x0_from_v(VIDEO, torch.ones(VIDEO.shape, dtype=torch.long), 0.6, 0.8),
     r"v must have a floating dtype"),
    ("classifier_free_guidance integer", lambda: classifier_free_guidance(VIDEO.long(), VIDEO.long(), 2.0), r"pred_cond must have a floating"),
    ("ddim_step_angular integer z_t", lambda: ddim_step_angular(VIDEO.long(), VIDEO, 0.5, 0.4), r"z_t must have a floating"),
    ("broadcast_per_item integer", lambda: broadcast_per_item(torch.tensor([500, 20]), VIDEO), r"values must have a floating"),
    ("sample step_ends of the wrong length", lambda: sample(identity_model, VIDEO, COSINE, TIMES, step_ends=TIMES[1:3],
                                                            progress=False), r"step_ends must be \(n_steps,\) = \(3,\)|one entry per step"),
]


@pytest.mark.parametrize("call, match", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_refused_with_a_message_naming_the_fix(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_per_item_coefficients_in_the_documented_shapes_still_work():
    """Numbers, 0-d tensors and (B, 1, 1, 1, 1) tensors (what alpha_sigma_for returns) all broadcast per item."""
    t = torch.tensor([0.3, 0.7])
    alpha, sigma = alpha_sigma_for(COSINE, t, VIDEO)
    z_t, eps = add_noise(VIDEO, t, COSINE, noise=VIDEO.flip(0))
    for a, s in ((alpha, sigma), (alpha[:1], sigma[:1])):
        assert torch.allclose(x0_from_eps(z_t, eps, alpha, sigma), VIDEO, atol=1e-5)
        ddim_step(z_t, eps, a, s, 1.0, 0.0, "eps")
    a0, s0 = COSINE.alpha_sigma(torch.tensor(0.3))
    assert torch.allclose(x0_from_v(z_t[:1], v_from_x0_eps(VIDEO[:1], eps[:1], a0, s0), a0, s0), VIDEO[:1], atol=1e-5)
    assert torch.allclose(x0_from_v(z_t[:1], v_from_x0_eps(VIDEO[:1], eps[:1], a0.item(), s0.item()), a0.item(), s0.item()),
                          VIDEO[:1], atol=1e-5)
