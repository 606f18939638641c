r"""Noise schedules: how much signal and how much noise a diffusion latent holds at time t.

Variational Diffusion Models (Kingma, Salimans, Poole, Ho, 2021, arXiv:2107.00630) and
Progressive Distillation (Salimans & Ho, 2022, arXiv:2202.00512) write the forward process as

    z_t = alpha_t x + sigma_t eps,        eps ~ N(0, I),        alpha_t^2 + sigma_t^2 = 1

with continuous t in [0, 1]. A schedule is fully described by alpha_bar_t = alpha_t^2 (DDPM's
"cumulative alpha"); everything else follows from it:

    log-SNR  lambda_t = log(alpha_t^2 / sigma_t^2)
    angle    phi_t    = arctan(sigma_t / alpha_t),   so  alpha_t = cos(phi_t), sigma_t = sin(phi_t)

Two kinds of schedule share this interface:

* ``CosineSchedule`` - continuous; the angle grows linearly in t, phi_t = a t + b, between the angles
  of a maximum and a minimum log-SNR (lambda = -2 log tan(a t + b), as in VDM and Imagen Video).
* ``DiscreteSchedule`` - DDPM's (Ho et al., 2020, arXiv:2006.11239) N discrete steps with variances
  beta_1..beta_N, alpha_bar_k = prod_{i<=k} (1 - beta_i), exactly as diffusers computes them, so
  published checkpoints see the alphas they were trained with. ``beta_schedule`` names how the betas
  are laid out: "linear" (DDPM), "scaled_linear" (Stable Diffusion; ``ScaledLinearSchedule``) or
  "squaredcos_cap_v2" (Nichol & Dhariwal, 2021, arXiv:2102.09672:
  alpha_bar(t) = cos^2(((t + s) / (1 + s)) pi / 2), s = 0.008, each beta capped at 0.999).

Zero terminal SNR (Lin, Liu, Li, Yang, 2023, "Common Diffusion Noise Schedules and Sample Steps are
Flawed", arXiv:2305.08891, Algorithm 1) shifts and rescales sqrt(alpha_bar) so that alpha_bar_N = 0
exactly while alpha_bar_1 is unchanged: the last timestep is pure noise, as sampling assumes.

An SNR shift divides the signal-to-noise ratio of every timestep by a scale s (the "shifted" schedules
of Hoogeboom, Heek, Salimans, 2023, "simple diffusion", arXiv:2301.11093, for large images; CogVideoX,
Yang et al., 2024, arXiv:2408.06072, trains with s = 3 before the zero-terminal-SNR rescale):

    SNR'_k = SNR_k / s,   i.e.  alpha_bar'_k = alpha_bar_k / (s + (1 - s) alpha_bar_k),   lambda' = lambda - log s

More pixels carry the same picture with more redundancy, so a large video needs more noise at every
step to hide it as well as a small image does.

Integer timesteps k = 0..N-1 (what published checkpoints take) and continuous t meet at
t = (k + 1) / N; t = 0 is clean data. ``inference_timesteps`` picks the timesteps a sampler visits
with one of the spacings of Lin et al.'s Table 2 ("leading", "trailing", "linspace").
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from minivdm.validation import check_finite, check_positive_int, check_tensor


TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _as_time_tensor(t) -> torch.Tensor:
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        t = torch.tensor(float(t))
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a float or a tensor of times in [0, 1], got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(
            f"t must be continuous time in [0, 1] (a floating tensor), got dtype {t.dtype}; "
            "for integer timesteps use schedule.t_from_timestep(k)"
        )
    # NaN compares False with everything, so it would pass the range check and index a table anywhere
    if not torch.isfinite(t).all():
        raise ValueError(f"t must be finite times in [0, 1], got {t.tolist() if t.numel() < 20 else 'NaN/inf values'}")
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"t must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]")
    return t


class NoiseSchedule(ABC):
    """alpha_bar_t for continuous t in [0, 1]; alpha, sigma, log-SNR and angle derive from it."""

    def __init__(self, num_train_timesteps: int = 1000):
        self.num_train_timesteps = check_positive_int(num_train_timesteps, "num_train_timesteps")

    @abstractmethod
    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t^2 at continuous times t (already validated)."""

    def alpha_bar(self, t) -> torch.Tensor:
        return self._alpha_bar(_as_time_tensor(t))

    def alpha_sigma(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_t, sigma_t) with alpha_t^2 + sigma_t^2 = 1."""
        alpha_bar = self.alpha_bar(t)
        return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()

    def log_snr(self, t) -> torch.Tensor:
        """lambda_t = log(alpha_t^2 / sigma_t^2); +inf at t = 0 for schedules that start clean."""
        alpha_bar = self.alpha_bar(t)
        return torch.log(alpha_bar) - torch.log1p(-alpha_bar)

    def phi(self, t) -> torch.Tensor:
        """The angle phi_t = arctan(sigma_t / alpha_t) in [0, pi/2]."""
        alpha, sigma = self.alpha_sigma(t)
        return torch.atan2(sigma, alpha)

    # --- integer timesteps, as published checkpoints and diffusers use them -------------------
    def t_from_timestep(self, timestep) -> torch.Tensor:
        timestep = torch.as_tensor(timestep)
        if timestep.is_floating_point():
            raise TypeError(f"timestep must be integer (0..{self.num_train_timesteps - 1}), got dtype {timestep.dtype}")
        if timestep.numel() and (timestep.min() < -1 or timestep.max() >= self.num_train_timesteps):
            raise ValueError(f"timestep must be in [-1, {self.num_train_timesteps - 1}], got {timestep.tolist()}")
        return (timestep.to(torch.float64) + 1) / self.num_train_timesteps

    def timestep_from_t(self, t) -> torch.Tensor:
        t = _as_time_tensor(t)
        return torch.round(t.to(torch.float64) * self.num_train_timesteps - 1).long()

    def inference_timesteps(self, num_steps: int, steps_offset: int = 0, spacing: str = "leading") -> torch.Tensor:
        """Integer timesteps for a sampler, high to low, spaced as diffusers' DDIMScheduler spaces them.

        With N = 1000 and 50 steps (Lin et al., Table 2):
          "leading"  k_i = i floor(N / n) + steps_offset:   980, 960, ..., 20, 0 (+ 1 for Stable Diffusion)
          "trailing" k_i = round(N - i N / n) - 1:            999, 979, ..., 39, 19  (starts at the last timestep)
          "linspace" k_i = round(i (N - 1) / (n - 1)):       999, 979, 958, ..., 20, 0

        For some step counts (61, 103, 121, ... of 1..1000) diffusers' "trailing" also yields an (n+1)-th
        timestep, -1, which indexes its table from the end (pure noise); we return the n timesteps asked for.
        ``steps_offset`` shifts only "leading" (diffusers' configs carry it for all three; its DDIM ignores
        it for the other two, and so do we).
        """
        check_positive_int(num_steps, "num_steps")
        if isinstance(steps_offset, bool) or not isinstance(steps_offset, int) or steps_offset < 0:
            raise ValueError(f"steps_offset must be an int >= 0, got {steps_offset!r}")
        n, N = num_steps, self.num_train_timesteps
        if n > N:
            raise ValueError(f"num_steps must be <= num_train_timesteps ({N}), got {n}")
        if spacing not in TIMESTEP_SPACINGS:
            raise ValueError(f"timestep_spacing must be one of {TIMESTEP_SPACINGS}, got {spacing!r}")
        i = torch.arange(n, dtype=torch.float64)
        if spacing == "leading":
            timesteps = (i * (N // n)).long().flip(0) + steps_offset
        elif spacing == "trailing":
            # intervals N/n wide, each represented by its last timestep: the first step is the noisiest one.
            # The stride is (N - N/n) - N, not -N/n: numpy's arange steps so, and ties at .5 then round as in diffusers
            stride = (N - N / n) - N
            timesteps = torch.round(N + i * stride).long() - 1
        else:
            timesteps = torch.round(i * ((N - 1) / max(n - 1, 1))).long().flip(0)
        if timesteps.max() >= N:
            raise ValueError(f"{n} steps with steps_offset={steps_offset} would start at timestep {timesteps.max().item()}, "
                             f"past the last trained timestep {N - 1}: lower steps_offset or num_steps")
        return timesteps

    def ddim_times(self, num_steps: int, spacing: str = "leading", steps_offset: int = 0,
                   set_alpha_to_one: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(times, step_ends) of diffusers' DDIMScheduler, for ``sample(..., times, step_ends=step_ends)``.

        ``times`` are the n times the model is evaluated at (``inference_timesteps``), then the time the
        last step lands on; ``step_ends[i]`` is where step i lands. diffusers lands every step
        floor(N / n) timesteps below the one it started from, which is the next evaluated timestep only
        when the spacing is uniform in integers ("leading", or "trailing" with n dividing N); otherwise
        (e.g. "linspace", 10 steps: evaluated at 999, 888, ... but landing at 899, 788, ...) the next
        step starts from a z one or more timesteps off its nominal time, and we do the same. A step
        that would land below timestep 0 lands on clean data (t = 0) when ``set_alpha_to_one``,
        otherwise on timestep 0 (t = 1/N), as Stable Diffusion's config asks.
        """
        timesteps = self.inference_timesteps(num_steps, steps_offset, spacing)
        final = torch.tensor(0.0 if set_alpha_to_one else 1.0 / self.num_train_timesteps, dtype=torch.float64)
        landing = timesteps - self.num_train_timesteps // num_steps
        step_ends = torch.where(landing >= 0, self.t_from_timestep(landing.clamp(min=0)), final)
        times = torch.cat([self.t_from_timestep(timesteps), step_ends[-1:]])
        return times, step_ends

    def uniform_times(self, num_steps: int) -> torch.Tensor:
        """Times 1 = t_0 > t_1 > ... > t_n = 0 for a from-scratch sampler: n steps need n + 1 times."""
        check_positive_int(num_steps, "num_steps")
        return torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)

    def leading_times(self, num_steps: int, steps_offset: int = 0, set_alpha_to_one: bool = True) -> torch.Tensor:
        """The continuous times of "leading" ``inference_timesteps``, then the final time the last step lands on.

        As in diffusers' DDIMScheduler: the last step goes to clean data (t = 0) when
        ``set_alpha_to_one``, otherwise to timestep 0 (t = 1/N), as Stable Diffusion's config asks.
        """
        times = self.t_from_timestep(self.inference_timesteps(num_steps, steps_offset))
        final = 0.0 if set_alpha_to_one else 1.0 / self.num_train_timesteps
        return torch.cat([times, torch.tensor([final], dtype=times.dtype)])


class CosineSchedule(NoiseSchedule):
    """phi_t = a t + b between log-SNR lambda_max (t = 0) and lambda_min (t = 1).

    lambda_t = -2 log tan(phi_t): with the defaults (+20, -20) z_0 is almost clean and z_1 almost
    pure noise, but alpha_1 is not exactly 0, so x = (z - sigma eps) / alpha stays finite.
    """

    def __init__(self, logsnr_max: float = 20.0, logsnr_min: float = -20.0, num_train_timesteps: int = 1000):
        super().__init__(num_train_timesteps)
        if not logsnr_max > logsnr_min:
            raise ValueError(f"logsnr_max must be > logsnr_min, got {logsnr_max} and {logsnr_min}")
        self.logsnr_max, self.logsnr_min = float(logsnr_max), float(logsnr_min)
        self.phi_min = math.atan(math.exp(-0.5 * self.logsnr_max))  # b
        self.phi_max = math.atan(math.exp(-0.5 * self.logsnr_min))  # a + b

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        phi = self.phi_min + (self.phi_max - self.phi_min) * t
        return torch.cos(phi) ** 2

    def phi(self, t) -> torch.Tensor:
        t = _as_time_tensor(t)
        return self.phi_min + (self.phi_max - self.phi_min) * t

    # straight from the angle: going through alpha_bar = cos^2 would round sigma_t to 0 near t = 0
    def alpha_sigma(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        phi = self.phi(t)
        return torch.cos(phi), torch.sin(phi)

    def log_snr(self, t) -> torch.Tensor:
        return -2 * torch.log(torch.tan(self.phi(t)))

    def __repr__(self) -> str:
        return f"CosineSchedule(logsnr_max={self.logsnr_max}, logsnr_min={self.logsnr_min})"


def betas_for_schedule(beta_schedule: str, beta_start: float, beta_end: float, num_train_timesteps: int) -> torch.Tensor:
    """beta_1..beta_N (float32) for a named layout, with diffusers' dtype and order of operations, so
    that the alphas match a published checkpoint's bit for bit."""
    check_positive_int(num_train_timesteps, "num_train_timesteps")
    N = num_train_timesteps
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, N, dtype=torch.float32)
    if beta_schedule == "scaled_linear":
        # linear in sqrt(beta): Stable Diffusion's (latent diffusion's) schedule
        return torch.linspace(beta_start**0.5, beta_end**0.5, N, dtype=torch.float32) ** 2
    if beta_schedule == "squaredcos_cap_v2":
        # beta_k = 1 - alpha_bar(k / N) / alpha_bar((k - 1) / N), in float64 then rounded once; the cap keeps
        # the last beta below 1 (alpha_bar(1) is ~1e-33, not 0)
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return torch.tensor([min(1 - alpha_bar((k + 1) / N) / alpha_bar(k / N), 0.999) for k in range(N)],
                            dtype=torch.float32)
    raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")


def zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Lin et al. (2023), Algorithm 1 on alpha_bar: sqrt(alpha_bar) is shifted down by its last value, then scaled
    back up so its first value is kept: alpha_bar_N is exactly 0, alpha_bar_1 unchanged."""
    sqrt_alpha_bar = alphas_cumprod.sqrt()
    first, last = sqrt_alpha_bar[0].clone(), sqrt_alpha_bar[-1].clone()
    sqrt_alpha_bar = (sqrt_alpha_bar - last) * (first / (first - last))
    return sqrt_alpha_bar**2


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. (2023), Algorithm 1: betas whose alpha_bar_N is exactly 0 and alpha_bar_1 unchanged (the betas are
    read back off the rescaled cumulative product)."""
    alpha_bar = zero_terminal_snr(torch.cumprod(1.0 - betas, dim=0))
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


def shift_snr(alphas_cumprod: torch.Tensor, scale: float) -> torch.Tensor:
    """SNR_k / scale at every timestep: alpha_bar' = alpha_bar / (s + (1 - s) alpha_bar) (s = 1: unchanged)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"snr_shift_scale must be a number > 0, got {scale!r}")
    return alphas_cumprod / (scale + (1 - scale) * alphas_cumprod)


class DiscreteSchedule(NoiseSchedule):
    """DDPM's discrete schedule: alpha_bar_k = prod_{i<=k} (1 - beta_i) for timesteps k = 0..N-1.

    Between grid points alpha_bar is interpolated linearly in k, with alpha_bar = 1 at k = -1 (t = 0).
    ``betas`` is any 1-d tensor of N values in [0, 1] (a checkpoint's ``trained_betas``); use
    ``from_beta_schedule`` for the named layouts.
    """

    def __init__(self, betas: torch.Tensor, description: str = "trained_betas"):
        check_tensor(betas, "betas", ndim=1, layout="(N,)", floating=True)
        check_finite(betas, "betas")
        if betas.numel() == 0 or betas.min() < 0 or betas.max() > 1:
            raise ValueError(f"betas must be N >= 1 values in [0, 1], got {betas.numel()} values in "
                             f"[{betas.min().item() if betas.numel() else 0:.4g}, {betas.max().item() if betas.numel() else 0:.4g}]")
        super().__init__(betas.numel())
        # float32 and this exact order of operations, as in diffusers, so that the alphas match bit for bit
        self.betas = betas.to(torch.float32)
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        if torch.any(self.alphas_cumprod[:-1] <= 0):
            raise ValueError("betas reach alpha_bar = 0 before the last timestep: only the final timestep may be pure noise")
        self.description = description

    @classmethod
    def from_beta_schedule(cls, beta_schedule: str = "scaled_linear", beta_start: float = 0.00085, beta_end: float = 0.012,
                           num_train_timesteps: int = 1000, rescale_betas_zero_snr: bool = False) -> "DiscreteSchedule":
        if not 0 <= beta_start <= beta_end <= 1:
            raise ValueError(f"need 0 <= beta_start <= beta_end <= 1, got {beta_start} and {beta_end}")
        betas = betas_for_schedule(beta_schedule, beta_start, beta_end, num_train_timesteps)
        if rescale_betas_zero_snr:
            betas = rescale_zero_terminal_snr(betas)
        description = f"{beta_schedule}, beta_start={beta_start}, beta_end={beta_end}, N={num_train_timesteps}"
        return cls(betas, description + (", zero terminal SNR" if rescale_betas_zero_snr else ""))

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: torch.Tensor, description: str = "alphas_cumprod") -> "DiscreteSchedule":
        """A schedule given by its table alpha_bar_0..alpha_bar_{N-1} (decreasing, in (0, 1], the last may be 0),
        kept as given (rounded once to float32), not re-multiplied from betas."""
        check_tensor(alphas_cumprod, "alphas_cumprod", ndim=1, layout="(N,)", floating=True)
        check_finite(alphas_cumprod, "alphas_cumprod")
        alpha_bar = alphas_cumprod.to(torch.float64)
        if alpha_bar.numel() == 0 or alpha_bar.max() > 1 or alpha_bar.min() < 0 or torch.any(alpha_bar[1:] > alpha_bar[:-1]):
            raise ValueError("alphas_cumprod must be N >= 1 values in [0, 1] that never increase")
        betas = 1 - alpha_bar / torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
        schedule = cls(betas.clamp(0, 1), description)
        schedule.alphas_cumprod = alpha_bar.to(torch.float32)
        return schedule

    @classmethod
    def from_shifted_beta_schedule(cls, beta_schedule: str = "scaled_linear", beta_start: float = 0.00085,
                                   beta_end: float = 0.012, num_train_timesteps: int = 1000,
                                   rescale_betas_zero_snr: bool = False,
                                   snr_shift_scale: float = 3.0) -> "DiscreteSchedule":
        """CogVideoX's schedule (diffusers' CogVideoXDDIMScheduler and CogVideoXDPMScheduler): the betas' alpha_bar in
        float64, its SNR divided by ``snr_shift_scale``, then (optionally) rescaled to zero terminal SNR."""
        if not 0 <= beta_start <= beta_end <= 1:
            raise ValueError(f"need 0 <= beta_start <= beta_end <= 1, got {beta_start} and {beta_end}")
        if beta_schedule == "scaled_linear":  # CogVideoX's schedulers lay these betas out in float64
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
        else:
            betas = betas_for_schedule(beta_schedule, beta_start, beta_end, num_train_timesteps)
        return cls.from_shifted_betas(betas, snr_shift_scale, rescale_betas_zero_snr,
                                      f"{beta_schedule}, beta_start={beta_start}, beta_end={beta_end}, "
                                      f"N={num_train_timesteps}")

    @classmethod
    def from_shifted_betas(cls, betas: torch.Tensor, snr_shift_scale: float, rescale_betas_zero_snr: bool,
                           description: str = "trained_betas") -> "DiscreteSchedule":
        """alpha_bar of ``betas``, SNR divided by ``snr_shift_scale``, then (optionally) zero terminal SNR."""
        check_tensor(betas, "betas", ndim=1, layout="(N,)", floating=True)
        alpha_bar = shift_snr(torch.cumprod(1.0 - betas, dim=0), snr_shift_scale)
        if rescale_betas_zero_snr:
            alpha_bar = zero_terminal_snr(alpha_bar)
        description += f", SNR / {snr_shift_scale}" + (", zero terminal SNR" if rescale_betas_zero_snr else "")
        return cls.from_alphas_cumprod(alpha_bar, description)

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        grid = torch.cat([torch.ones(1), self.alphas_cumprod])  # index 0 is k = -1
        position = t.to(torch.float64) * self.num_train_timesteps  # k + 1
        # snap t = (k+1)/N back onto the grid so integer timesteps read the table exactly
        position = torch.where((position - position.round()).abs() < 1e-6, position.round(), position)
        low = position.floor().long().clamp(max=self.num_train_timesteps)
        high = (low + 1).clamp(max=self.num_train_timesteps)
        weight = (position - low).to(torch.float32)
        return (grid[low] * (1 - weight) + grid[high] * weight).to(t.dtype)

    def __repr__(self) -> str:
        return f"DiscreteSchedule({self.description})"


class ScaledLinearSchedule(DiscreteSchedule):
    """Stable Diffusion's schedule: beta_k = (linspace(sqrt(beta_start), sqrt(beta_end), N)_k)^2."""

    def __init__(self, beta_start: float = 0.00085, beta_end: float = 0.012, num_train_timesteps: int = 1000):
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {beta_start} and {beta_end}")
        self.beta_start, self.beta_end = beta_start, beta_end
        super().__init__(betas_for_schedule("scaled_linear", beta_start, beta_end, num_train_timesteps), "scaled_linear")

    def __repr__(self) -> str:
        return f"ScaledLinearSchedule(beta_start={self.beta_start}, beta_end={self.beta_end}, N={self.num_train_timesteps})"
