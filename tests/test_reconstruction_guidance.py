"""Properties of reconstruction guidance (Ho, Salimans et al., 2022, arXiv:2204.03458, Sec. 3.1).

The conditional-sampling tests use Gaussian data whose exact denoiser is known in closed form: for
x ~ N(0, Sigma) and z_t = alpha_t x + sigma_t eps,

    x_hat(z_t) = E[x | z_t] = alpha_t Sigma (alpha_t^2 Sigma + sigma_t^2 I)^{-1} z_t

and the true conditional p(x^b | x^a) is Gaussian too, so a sampler's error can be measured exactly.
"""

import pytest
import torch
from einops import rearrange

from minivdm.diffusion import CosineSchedule, sample, training_target, x0_from_v
from minivdm.diffusion.forward_process import alpha_sigma_for
from minivdm.diffusion.parameterization import predictions_to_x0_eps
from minivdm.diffusion.reconstruction_guidance import (
    observe_downsampled,
    observe_first_frames,
    reconstruction_guided_extension_model,
    reconstruction_guided_model,
    reconstruction_guided_x0,
    replacement_model,
)

SCHEDULE = CosineSchedule()
F64 = torch.float64


class GaussianOracle:
    """The exact x0-prediction E[x | z_t] for videos x ~ N(0, Sigma), Sigma over all C*T*H*W entries."""

    def __init__(self, cov: torch.Tensor):
        self.cov = cov

    def __call__(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = SCHEDULE.alpha_sigma(t)
        z = rearrange(z_t, "b c t h w -> b (c t h w)")
        noisy_cov = alpha[:, None, None] ** 2 * self.cov + sigma[:, None, None] ** 2 * torch.eye(len(self.cov), dtype=F64)
        x_hat = alpha[:, None] * (torch.linalg.solve(noisy_cov, z[..., None])[..., 0] @ self.cov)
        return x_hat.reshape(z_t.shape)


def ar1_cov(num_frames: int, rho: float) -> torch.Tensor:
    """Scalar frames with corr(x_i, x_j) = rho^|i - j|: neighbouring frames strongly correlated."""
    frame = torch.arange(num_frames)
    return (rho ** (frame[:, None] - frame[None, :]).abs()).to(F64)


def random_video(*shape, seed=0, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def nonlinear_model(prediction_type):
    """A small differentiable model_fn that mixes frames and pixels, in any parameterization."""
    weight = random_video(12, 12, seed=7) / 3

    def model_fn(z_t, t):
        z = rearrange(z_t, "b c t h w -> b (c t h w)")
        return torch.tanh(z @ weight.T + t[:, None]).reshape(z_t.shape)

    return model_fn


# --- the guided estimate --------------------------------------------------------------------------

@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("observe, x_a_shape", [(observe_first_frames(1), (2, 1, 1, 2, 2)),
                                                (observe_downsampled(2), (2, 1, 3, 1, 1))], ids=["frames", "downsampled"])
def test_w_r_zero_gives_the_unconditional_estimate(prediction_type, observe, x_a_shape):
    model_fn = nonlinear_model(prediction_type)
    z_t, t = random_video(2, 1, 3, 2, 2, seed=1), torch.tensor([0.3, 0.8], dtype=F64)
    alpha_t, sigma_t = alpha_sigma_for(SCHEDULE, t, z_t)
    x_hat, _ = predictions_to_x0_eps(model_fn(z_t, t), z_t, alpha_t, sigma_t, prediction_type)
    x_a = random_video(*x_a_shape, seed=2)
    x_tilde = reconstruction_guided_x0(model_fn, z_t, t, SCHEDULE, prediction_type, observe, x_a, w_r=0.0)
    assert torch.equal(x_tilde, x_hat)
    guided = reconstruction_guided_model(model_fn, SCHEDULE, observe, x_a, 0.0, prediction_type=prediction_type)
    assert torch.allclose(guided(z_t, t), model_fn(z_t, t), atol=1e-10)


@pytest.mark.parametrize("prediction_type", ["eps", "x0", "v"])
@pytest.mark.parametrize("observe", [observe_first_frames(2), observe_downsampled(2)], ids=["frames", "downsampled"])
def test_guidance_is_the_analytic_gradient_for_a_linear_denoiser(prediction_type, observe):
    # a linear model: prediction = M z_t, so x_hat = J z_t and, with x^a_hat = P x_hat,
    # x_tilde = x_hat - (w_r alpha_t / 2) grad ||x^a - P J z_t||^2 = x_hat + w_r alpha_t J^T P^T (x^a - P x_hat)
    shape = (1, 1, 3, 2, 2)
    M = random_video(12, 12, seed=3) / 4
    model_fn = lambda z_t, t: (rearrange(z_t, "b c t h w -> b (c t h w)") @ M.T).reshape(z_t.shape)  # noqa: E731
    t, w_r = torch.tensor([0.4], dtype=F64), 2.5
    alpha_t, sigma_t = (value.item() for value in SCHEDULE.alpha_sigma(t))
    basis = torch.eye(12, dtype=F64).reshape(12, *shape[1:])
    J = predictions_to_x0_eps(model_fn(basis, t.expand(12)), basis, alpha_t, sigma_t, prediction_type)[0].reshape(12, 12).T
    P = observe(basis).reshape(12, -1).T
    z = random_video(12, seed=4)
    x_a = random_video(P.shape[0], seed=5)
    expected = J @ z + w_r * alpha_t * J.T @ P.T @ (x_a - P @ J @ z)

    x_tilde = reconstruction_guided_x0(model_fn, z.reshape(shape), t, SCHEDULE, prediction_type, observe,
                                       x_a.reshape(observe(basis[:1]).shape), w_r)
    assert torch.allclose(x_tilde.flatten(), expected, atol=1e-10)


def test_guidance_matches_finite_differences_for_a_nonlinear_model():
    model_fn, observe = nonlinear_model("v"), observe_first_frames(1)
    z_t, t, w_r = random_video(1, 1, 3, 2, 2, seed=1), torch.tensor([0.6], dtype=F64), 3.0
    x_a = random_video(1, 1, 1, 2, 2, seed=2)
    alpha_t, sigma_t = alpha_sigma_for(SCHEDULE, t, z_t)

    def reconstruction_error(z):
        x_hat = x0_from_v(z, model_fn(z, t), alpha_t, sigma_t)
        return (x_a - observe(x_hat)).pow(2).sum()

    step, grad = 1e-6, torch.zeros(12, dtype=F64)
    for i in range(12):
        bump = torch.zeros(12, dtype=F64)
        bump[i] = step
        bump = bump.reshape(z_t.shape)
        grad[i] = (reconstruction_error(z_t + bump) - reconstruction_error(z_t - bump)) / (2 * step)
    x_hat = x0_from_v(z_t, model_fn(z_t, t), alpha_t, sigma_t)
    x_tilde = reconstruction_guided_x0(model_fn, z_t, t, SCHEDULE, "v", observe, x_a, w_r)
    assert torch.allclose(x_tilde, x_hat - (w_r * alpha_t / 2) * grad.reshape(z_t.shape), atol=1e-7)


def test_guidance_differentiates_through_z_t_only_and_works_under_no_grad():
    model = torch.nn.Conv3d(1, 1, kernel_size=(3, 1, 1), padding=(1, 0, 0))
    z_t, t = torch.randn(2, 1, 4, 2, 2), torch.tensor([0.5, 0.5])
    with torch.no_grad():  # as inside sample()
        x_tilde = reconstruction_guided_x0(lambda z, t_: model(z), z_t, t, SCHEDULE, "x0",
                                           observe_first_frames(2), torch.zeros(2, 1, 2, 2, 2), 2.0)
    assert not torch.equal(x_tilde, model(z_t).detach())
    assert not x_tilde.requires_grad
    assert all(parameter.grad is None for parameter in model.parameters())


# --- conditional sampling on Gaussian frames ------------------------------------------------------

NUM_FRAMES, NUM_KNOWN, RHO = 4, 1, 0.9
NUM_CONDITIONS, SAMPLES_EACH, STEPS = 32, 32, 25


@pytest.fixture(scope="module")
def gaussian_extension():
    """x^a = frame 0 of 4 AR(1) frames (rho 0.9); conditional-mean error and spread of x^b per method."""
    cov = ar1_cov(NUM_FRAMES, RHO)
    cov_aa, cov_ab, cov_bb = cov[:NUM_KNOWN, :NUM_KNOWN], cov[:NUM_KNOWN, NUM_KNOWN:], cov[NUM_KNOWN:, NUM_KNOWN:]
    x_a = random_video(NUM_CONDITIONS, NUM_KNOWN, seed=0) @ torch.linalg.cholesky(cov_aa).T
    true_mean = x_a @ torch.linalg.solve(cov_aa, cov_ab)  # E[x^b | x^a]
    true_std = (cov_bb - cov_ab.T @ torch.linalg.solve(cov_aa, cov_ab)).diagonal().mean().sqrt()
    x_a_video = rearrange(x_a.repeat_interleave(SAMPLES_EACH, 0), "b t -> b 1 t 1 1")
    z_1 = random_video(NUM_CONDITIONS * SAMPLES_EACH, 1, NUM_FRAMES, 1, 1, seed=1)
    oracle = GaussianOracle(cov)

    def run(model_fn):
        x = sample(model_fn, z_1, SCHEDULE, SCHEDULE.uniform_times(STEPS), prediction_type="x0", progress=False)
        x_b = rearrange(x[:, 0, NUM_KNOWN:, 0, 0], "(n s) t -> n s t", s=SAMPLES_EACH)
        return {"mean_error": (x_b.mean(1) - true_mean).pow(2).mean().sqrt().item(),
                "std_ratio": (x_b.std(1).pow(2).mean().sqrt() / true_std).item(),
                "known_frames_error": (x[:, :, :NUM_KNOWN] - x_a_video).abs().max().item()}

    noise = lambda: torch.Generator().manual_seed(2)  # noqa: E731  (same replacement noise for every method)
    results = {"true_mean_rms": true_mean.pow(2).mean().sqrt().item(), "unconditional": run(oracle),
               "replacement": run(replacement_model(oracle, SCHEDULE, x_a_video, prediction_type="x0", generator=noise()))}
    for w_r in (1.0, 2.0, 5.0):
        results[w_r] = run(reconstruction_guided_extension_model(oracle, SCHEDULE, x_a_video, w_r,
                                                                 prediction_type="x0", generator=noise()))
    return results


def test_reconstruction_guidance_finds_the_conditional_mean_that_replacement_misses(gaussian_extension):
    errors = {method: result["mean_error"] for method, result in gaussian_extension.items() if method != "true_mean_rms"}
    # unconditional samples ignore x^a: their error is about the spread of E[x^b | x^a] itself
    assert errors["unconditional"] > 0.8 * gaussian_extension["true_mean_rms"]
    assert errors["replacement"] < 0.8 * errors["unconditional"]
    # the paper's claims: guidance beats replacement, and w_r > 1 beats w_r = 1
    assert errors[1.0] < errors["replacement"]
    assert errors[5.0] < errors[2.0] < errors[1.0]
    assert errors[5.0] < 0.4 * errors["replacement"]


def test_reconstruction_guidance_gives_the_conditional_spread(gaussian_extension):
    # replacement samples are too spread out; guidance with w_r = 5 is close to the true conditional std
    assert gaussian_extension["replacement"]["std_ratio"] > 1.25
    assert abs(gaussian_extension[5.0]["std_ratio"] - 1) < 0.2


def test_known_frames_come_back_as_x_a(gaussian_extension):
    # up to sigma_0 eps: the cosine schedule stops at log-SNR 20, not at exactly clean data
    for method in ("replacement", 1.0, 5.0):
        assert gaussian_extension[method]["known_frames_error"] < 1e-3


def test_w_r_zero_extension_is_exactly_replacement():
    oracle = GaussianOracle(ar1_cov(3, RHO))
    x_a, z_1 = random_video(4, 1, 1, 1, 1, seed=0), random_video(4, 1, 3, 1, 1, seed=1)
    times = SCHEDULE.uniform_times(5)
    replaced = sample(replacement_model(oracle, SCHEDULE, x_a, prediction_type="x0", generator=torch.Generator().manual_seed(0)),
                      z_1, SCHEDULE, times, prediction_type="x0", progress=False)
    guided = sample(reconstruction_guided_extension_model(oracle, SCHEDULE, x_a, 0.0, prediction_type="x0",
                                                          generator=torch.Generator().manual_seed(0)),
                    z_1, SCHEDULE, times, prediction_type="x0", progress=False)
    assert torch.equal(guided, replaced)


def test_the_models_parameterization_does_not_change_guided_sampling():
    oracle = GaussianOracle(ar1_cov(3, RHO))

    def oracle_v(z_t, t):
        alpha_t, sigma_t = alpha_sigma_for(SCHEDULE, t, z_t)
        x_hat = oracle(z_t, t)
        return training_target(x_hat, (z_t - alpha_t * x_hat) / sigma_t, alpha_t, sigma_t, "v")

    x_a, z_1 = random_video(4, 1, 1, 1, 1, seed=0), random_video(4, 1, 3, 1, 1, seed=1)
    samples = [sample(reconstruction_guided_extension_model(model_fn, SCHEDULE, x_a, 3.0, prediction_type=kind,
                                                            generator=torch.Generator().manual_seed(0)),
                      z_1, SCHEDULE, SCHEDULE.uniform_times(10), prediction_type=kind, progress=False)
               for model_fn, kind in [(oracle, "x0"), (oracle_v, "v")]]
    assert torch.allclose(samples[0], samples[1], atol=1e-8)


# --- super-resolution -----------------------------------------------------------------------------

def test_super_resolution_samples_downsample_to_x_a_as_w_r_grows():
    # 4x4 frames with smooth spatial correlation; x^a = the 2x2 average-pooled version of a data sample
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    pixels = torch.stack([rows.flatten(), cols.flatten()], dim=1).to(F64)
    cov = torch.exp(-torch.cdist(pixels, pixels) ** 2 / (2 * 1.5**2)) + 1e-3 * torch.eye(16, dtype=F64)
    oracle, observe = GaussianOracle(cov), observe_downsampled(2)
    x = rearrange(random_video(64, 16, seed=0) @ torch.linalg.cholesky(cov).T, "b (h w) -> b 1 1 h w", h=4)
    x_a, z_1 = observe(x), random_video(64, 1, 1, 4, 4, seed=1)

    def downsampling_error(w_r):
        model_fn = reconstruction_guided_model(oracle, SCHEDULE, observe, x_a, w_r, prediction_type="x0")
        x_sampled = sample(model_fn, z_1, SCHEDULE, SCHEDULE.uniform_times(25), prediction_type="x0", progress=False)
        return (observe(x_sampled) - x_a).pow(2).mean().sqrt().item()

    errors = [downsampling_error(w_r) for w_r in (0.0, 1.0, 3.0, 10.0)]
    assert errors[0] > 1.0  # the unconditional model knows nothing of x^a
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 0.01


def test_observations_pick_frames_and_downsample():
    video = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(1, 2, 3, 4, 4)
    assert torch.equal(observe_first_frames(2)(video), video[:, :, :2])
    pooled = observe_downsampled(2)(video)
    assert pooled.shape == (1, 2, 3, 2, 2)
    assert pooled[0, 1, 2, 1, 0] == video[0, 1, 2, 2:4, 0:2].mean()
    # bilinear (the paper's example) halves the resolution too and keeps a constant video constant
    assert torch.equal(observe_downsampled(4, "bilinear")(torch.ones(1, 1, 2, 8, 8)), torch.ones(1, 1, 2, 2, 2))


# --- bad input ------------------------------------------------------------------------------------

identity = lambda z_t, t: z_t  # noqa: E731
z_video, t_batch = torch.randn(2, 1, 4, 4, 4), torch.tensor([0.5, 0.5])


@pytest.mark.parametrize("call, match", [
    (lambda: observe_first_frames(4)(z_video), r"T > 4"),
    (lambda: observe_first_frames(1)(torch.randn(2, 1, 4, 4)), r"\(B, C, T, H, W\)"),
    (lambda: observe_first_frames(0), "positive int"),
    (lambda: observe_downsampled(3)(z_video), "divisible by 3"),
    (lambda: observe_downsampled(2, "nearest"), "mode must be one of"),
    (lambda: reconstruction_guided_x0(identity, z_video, t_batch, SCHEDULE, "x0", observe_first_frames(1),
                                      torch.randn(2, 1, 2, 4, 4), 1.0), r"observe\(x_hat\) gives \(2, 1, 1, 4, 4\)"),
    (lambda: reconstruction_guided_x0(identity, z_video, t_batch, SCHEDULE, "x0", observe_first_frames(1),
                                      torch.randn(3, 1, 1, 4, 4), 1.0), "batch size and channels"),
    (lambda: reconstruction_guided_x0(identity, z_video, t_batch, SCHEDULE, "x0", observe_first_frames(1),
                                      torch.randn(2, 1, 1, 4, 4), -1.0), "w_r must be >= 0"),
    (lambda: reconstruction_guided_x0(identity, z_video, t_batch, SCHEDULE, "x0", "first", torch.randn(2, 1, 1, 4, 4), 1.0),
     "observe must be a function"),
    (lambda: reconstruction_guided_x0(identity, z_video, torch.tensor(0.5), SCHEDULE, "x0", observe_first_frames(1),
                                      torch.randn(2, 1, 1, 4, 4), 1.0), r"t must be .*\(B,\)"),
    (lambda: reconstruction_guided_x0(identity, z_video, t_batch, SCHEDULE, "noise", observe_first_frames(1),
                                      torch.randn(2, 1, 1, 4, 4), 1.0), "prediction_type"),
    (lambda: reconstruction_guided_extension_model(identity, SCHEDULE, torch.randn(2, 1, 1, 4, 4), True,
                                                   prediction_type="x0"), "w_r must be a number"),
    (lambda: reconstruction_guided_extension_model(identity, SCHEDULE, torch.randn(2, 1, 4, 4, 4), 1.0,
                                                   prediction_type="x0")(z_video, t_batch), r"T_a < 4"),
    (lambda: replacement_model(identity, SCHEDULE, torch.randn(2, 1, 1, 2, 2), prediction_type="x0")(z_video, t_batch),
     r"first frames of the video, \(B, C, T_a, H, W\)"),
    (lambda: replacement_model(identity, SCHEDULE, torch.randn(2, 1, 4, 4), prediction_type="x0"), r"\(B, C, T, H, W\)"),
    (lambda: reconstruction_guided_model(identity, SCHEDULE, None, torch.randn(2, 1, 4, 2, 2), 1.0,
                                         prediction_type="x0"), "observe must be a function"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
