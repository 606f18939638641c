"""Properties of autoregressive video extension (Ho, Salimans et al., 2022, arXiv:2204.03458, Sec. 3.1).

The statistical test uses frames from a stationary AR(1) process, x_{f+1} = rho x_f + sqrt(1 - rho^2) e_f,
whose exact denoiser over one window is known in closed form (x ~ N(0, Sigma), Sigma_ij = rho^|i-j|):

    x_hat(z_t) = E[x | z_t] = alpha_t Sigma (alpha_t^2 Sigma + sigma_t^2 I)^{-1} z_t

The process is Markov, so a window that knows the last frames so far knows everything the past says
about the future: E[x_{T0-1+k} | first clip] = rho^k x_{T0-1}, however many windows away frame T0-1+k is.
"""

import pytest
import torch
from einops import rearrange

from minivdm.diffusion import CosineSchedule, sample
from minivdm.diffusion.reconstruction_guidance import replacement_model
from minivdm.methods.video_extension import extend_video

SCHEDULE = CosineSchedule()
F64 = torch.float64


class AR1Oracle:
    """The exact x0-prediction E[x | z_t] for windows of scalar AR(1) frames (C = H = W = 1).

    Records the shape of every z_t it is called with.
    """

    def __init__(self, num_frames: int, rho: float):
        frame = torch.arange(num_frames)
        self.cov = (rho ** (frame[:, None] - frame[None, :]).abs()).to(F64)
        self.shapes = []

    def __call__(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(z_t.shape))
        alpha, sigma = SCHEDULE.alpha_sigma(t)
        z = rearrange(z_t, "b c t h w -> b (c t h w)")
        identity = torch.eye(len(self.cov), dtype=F64)
        noisy_cov = alpha[:, None, None] ** 2 * self.cov + sigma[:, None, None] ** 2 * identity
        x_hat = alpha[:, None] * (torch.linalg.solve(noisy_cov, z[..., None])[..., 0] @ self.cov)
        return x_hat.reshape(z_t.shape)


def pixel_model(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A small differentiable model that mixes frames (x0-prediction), for clips with a few pixels."""
    mixed = z_t + 0.5 * z_t.roll(1, dims=2) - 0.25 * z_t.flip(2)
    return torch.tanh(mixed) * (1 - t[:, None, None, None, None])


def random_video(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def extend(model_fn, first_clip, total_frames, *, window=4, overlap=2, method="replacement", w_r=None,
           num_steps=3, seed=0):
    return extend_video(model_fn, first_clip, total_frames, SCHEDULE, window=window, overlap=overlap, method=method,
                        w_r=w_r, num_steps=num_steps, prediction_type="x0",
                        generator=torch.Generator().manual_seed(seed))


# --- the loop -------------------------------------------------------------------------------------

@pytest.mark.parametrize("first_frames, total_frames, window, overlap", [
    (2, 10, 4, 2),   # 4 windows of 2 new frames
    (3, 8, 4, 1),    # 5 new frames: the second window is cut after 2 of its 3
    (5, 5, 4, 2),    # nothing to add
    (1, 7, 6, 1),
])
@pytest.mark.parametrize("method, w_r", [("replacement", None), ("reconstruction", 2.0)])
def test_output_starts_with_first_clip_and_has_total_frames(first_frames, total_frames, window, overlap, method, w_r):
    first_clip = random_video(2, 1, first_frames, 2, 2, seed=1)
    video = extend(pixel_model, first_clip, total_frames, window=window, overlap=overlap, method=method, w_r=w_r)
    assert video.shape == (2, 1, total_frames, 2, 2)
    assert torch.equal(video[:, :, :first_frames], first_clip)
    assert torch.isfinite(video).all()


@pytest.mark.parametrize("method, w_r", [("replacement", None), ("reconstruction", 2.0)])
def test_the_model_only_ever_sees_one_window(method, w_r):
    window, overlap, num_steps, total_frames = 4, 2, 3, 11
    oracle = AR1Oracle(window, 0.8)
    extend(oracle, random_video(3, 1, 2, 1, 1), total_frames, window=window, overlap=overlap, method=method, w_r=w_r,
           num_steps=num_steps)
    num_windows = 5  # 9 new frames, 2 per window: the last window is cut to 1
    assert oracle.shapes == [(3, 1, window, 1, 1)] * (num_windows * num_steps)


def test_windows_slide_over_the_frames_generated_so_far():
    # the same two windows written out by hand: each samples with the last `overlap` frames as x^a
    first_clip, window, overlap, num_steps = random_video(2, 1, 3, 2, 2, seed=1), 4, 2, 4
    generator, times = torch.Generator().manual_seed(0), SCHEDULE.uniform_times(num_steps)
    video = first_clip
    for _ in range(2):
        x_a = video[:, :, -overlap:]
        model_fn = replacement_model(pixel_model, SCHEDULE, x_a, prediction_type="x0", generator=generator)
        z_1 = torch.randn(2, 1, window, 2, 2, generator=generator, dtype=F64)
        x = sample(model_fn, z_1, SCHEDULE, times, prediction_type="x0", progress=False)
        video = torch.cat([video, x[:, :, overlap:]], dim=2)
    extended = extend(pixel_model, first_clip, 7, window=window, overlap=overlap, num_steps=num_steps)
    assert torch.equal(extended, video)


@pytest.mark.parametrize("method, w_r", [("replacement", None), ("reconstruction", 2.0)])
def test_the_continuation_depends_on_the_last_overlap_frames_only(method, w_r):
    first_clip, overlap = random_video(2, 1, 5, 2, 2, seed=1), 2
    video = extend(pixel_model, first_clip, 11, overlap=overlap, method=method, w_r=w_r)
    older_changed, last_changed = first_clip.clone(), first_clip.clone()
    older_changed[:, :, :-overlap] += 1.0
    last_changed[:, :, -1] += 1.0
    # frames before the window's x^a are out of the model's sight: bit-identical continuation
    assert torch.equal(extend(pixel_model, older_changed, 11, overlap=overlap, method=method, w_r=w_r)[:, :, 5:],
                       video[:, :, 5:])
    # the last known frame is x^a: every later window feels it
    changed = extend(pixel_model, last_changed, 11, overlap=overlap, method=method, w_r=w_r)[:, :, 5:]
    assert ((changed - video[:, :, 5:]).abs().amax(dim=(0, 1, 3, 4)) > 1e-6).all()


def test_reconstruction_with_w_r_zero_is_replacement():
    first_clip = random_video(2, 1, 3, 2, 2, seed=1)
    replaced = extend(pixel_model, first_clip, 9, method="replacement", seed=5)
    guided = extend(pixel_model, first_clip, 9, method="reconstruction", w_r=0.0, seed=5)
    assert torch.equal(guided, replaced)
    assert not torch.equal(extend(pixel_model, first_clip, 9, method="reconstruction", w_r=2.0, seed=5), replaced)


# --- the continuation of an AR(1) process ---------------------------------------------------------

RHO, WINDOW, OVERLAP, FIRST_FRAMES, TOTAL_FRAMES = 0.8, 4, 2, 2, 10
NUM_CONDITIONS, SAMPLES_EACH, STEPS = 8, 256, 25


@pytest.fixture(scope="module")
def ar1_extensions():
    """Per method: RMS over first clips of (sample mean - rho^k x_{T0-1}) and mean sample std / true std, per k."""
    generator = torch.Generator().manual_seed(5)
    x_0 = torch.randn(NUM_CONDITIONS, generator=generator, dtype=F64)
    x_1 = RHO * x_0 + (1 - RHO**2) ** 0.5 * torch.randn(NUM_CONDITIONS, generator=generator, dtype=F64)
    first_clip = rearrange(torch.stack([x_0, x_1], dim=1).repeat_interleave(SAMPLES_EACH, 0), "b t -> b 1 t 1 1")
    k = torch.arange(1, TOTAL_FRAMES - FIRST_FRAMES + 1, dtype=F64)
    true_mean = x_1[:, None] * RHO**k  # (conditions, k)
    true_std = (1 - RHO ** (2 * k)).sqrt()

    def run(method, w_r):
        video = extend(AR1Oracle(WINDOW, RHO), first_clip, TOTAL_FRAMES, window=WINDOW, overlap=OVERLAP,
                       method=method, w_r=w_r, num_steps=STEPS)
        new = rearrange(video[:, 0, FIRST_FRAMES:, 0, 0], "(n s) k -> n s k", s=SAMPLES_EACH)
        return {"mean_error": (new.mean(1) - true_mean).pow(2).mean(0).sqrt(),
                "std_ratio": new.std(1).mean(0) / true_std}

    return {"true_mean_rms": true_mean.pow(2).mean(0).sqrt(), "replacement": run("replacement", None),
            "reconstruction": run("reconstruction", 5.0)}


def test_reconstruction_guided_extension_follows_the_process_across_windows(ar1_extensions):
    guided, replaced = ar1_extensions["reconstruction"], ar1_extensions["replacement"]
    # every new frame, in every window, has about the mean rho^k x_{T0-1} that the first clip implies
    # (a 256-sample mean is noisy by about 0.05; conditioning every window on the first clip instead of
    # the frames before it would put frame k = 3 at rho x_{T0-1}, not rho^3 x_{T0-1}: off by about 0.2)
    assert guided["mean_error"].max() < 0.12
    # the paper's point: replacement conditions weakly; guidance is much closer in the first windows
    assert (guided["mean_error"][:4] < 0.5 * replaced["mean_error"][:4]).all()
    # samples, not the mean: the spread grows with k as 1 - rho^(2k) says (guidance narrows it somewhat)
    assert ((guided["std_ratio"] > 0.7) & (guided["std_ratio"] < 1.1)).all()


# --- bad input ------------------------------------------------------------------------------------

clip = torch.randn(1, 1, 3, 2, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(window=4, overlap=4), r"window > overlap > 0"),
    (dict(window=3, overlap=5), r"window > overlap > 0"),
    (dict(window=4, overlap=0), "overlap must be a positive int"),
    (dict(window=4, overlap=2, first_clip=torch.randn(1, 1, 1, 2, 2)), r"T >= overlap = 2"),
    (dict(window=4, overlap=2, total_frames=2), r"total_frames must be >= the T = 3 frames"),
    (dict(window=4, overlap=2, first_clip=torch.randn(1, 3, 2, 2)), r"\(B, C, T, H, W\)"),
    (dict(window=4, overlap=2, first_clip=torch.ones(1, 1, 3, 2, 2, dtype=torch.long)), "floating dtype"),
    (dict(window=4, overlap=2, method="inpainting"), "method must be one of"),
    (dict(window=4, overlap=2, method="reconstruction", w_r=None), "needs the guidance weight w_r"),
    (dict(window=4, overlap=2, method="reconstruction", w_r=-1.0), "w_r must be >= 0"),
    (dict(window=4, overlap=2, method="replacement", w_r=2.0), "replacement' has no guidance weight"),
    (dict(window=4, overlap=2, num_steps=0), "num_steps must be a positive int"),
    (dict(window=4, overlap=2, prediction_type="noise"), "prediction_type"),
])
def test_bad_input_gets_a_clear_error(kwargs, match):
    arguments = dict(first_clip=clip, total_frames=8, method="replacement", w_r=None, num_steps=2, prediction_type="x0")
    arguments.update(kwargs)
    first_clip, total_frames = arguments.pop("first_clip"), arguments.pop("total_frames")
    with pytest.raises((ValueError, TypeError), match=match):
        extend_video(pixel_model, first_clip, total_frames, SCHEDULE, **arguments)
