"""Input checks shared by every public function.

Each check raises a ``TypeError`` (wrong kind of object / dtype) or ``ValueError`` (wrong shape or
range) whose message names the layout that was expected and what was received, so that a learner
sees ``video must be (B, C, T, H, W), got (3, 8, 32, 32)`` instead of a stack trace from inside
einsum.
"""

from __future__ import annotations

import math

import torch

VIDEO_LAYOUT = "(B, C, T, H, W)"
IMAGE_LAYOUT = "(B, C, H, W)"


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__}"


def check_tensor(x, name: str, *, ndim: int | tuple[int, ...] | None = None, layout: str | None = None,
                 floating: bool = False) -> torch.Tensor:
    """Check that ``x`` is a tensor (optionally with ``ndim`` dims and a floating dtype)."""
    expected = f"a torch.Tensor{' ' + layout if layout else ''}"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be {expected}, got {_describe(x)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            shape_text = layout or f"a {' or '.join(map(str, allowed))}-d tensor"
            raise ValueError(f"{name} must be {shape_text}, got shape {tuple(x.shape)}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype (float16/bfloat16/float32/float64), got {x.dtype}")
    return x


def check_video(x, name: str = "video") -> torch.Tensor:
    """A float video batch laid out (B, C, T, H, W)."""
    return check_tensor(x, name, ndim=5, layout=VIDEO_LAYOUT, floating=True)


def check_image(x, name: str = "image") -> torch.Tensor:
    """A float image batch laid out (B, C, H, W)."""
    return check_tensor(x, name, ndim=4, layout=IMAGE_LAYOUT, floating=True)


def check_image_or_video(x, name: str = "x") -> torch.Tensor:
    """Diffusion maths is elementwise: images (B, C, H, W) and videos (B, C, T, H, W) both work."""
    return check_tensor(x, name, ndim=(4, 5), layout=f"{IMAGE_LAYOUT} or {VIDEO_LAYOUT}", floating=True)


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def check_in_range(value: float, name: str, low: float, high: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number in [{low}, {high}], got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return float(value)


def check_number(value, name: str) -> float:
    """A finite real number (an int or a float, not a bool); returned as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_timesteps(timestep, batch: int, device: torch.device) -> torch.Tensor:
    """A denoiser's timestep: one number for the whole batch, or one per item (B,); finite. Returns (B,)."""
    if isinstance(timestep, bool) or not isinstance(timestep, (int, float, torch.Tensor)):
        raise TypeError(f"timestep must be a number or a tensor of shape (B,) = ({batch},), got {_describe(timestep)}")
    timesteps = torch.as_tensor(timestep, device=device)
    if timesteps.ndim > 1 or timesteps.numel() not in (1, batch):
        raise ValueError(f"timestep must be a scalar or have shape (B,) = ({batch},) for a batch of {batch}, "
                         f"got shape {tuple(timesteps.shape)}")
    if timesteps.is_floating_point() and not torch.isfinite(timesteps).all():
        raise ValueError(f"timestep must be finite, got {timesteps.tolist()}")
    return timesteps.reshape(-1).expand(batch)


def check_matches_weights(x: torch.Tensor, name: str, weight: torch.Tensor) -> None:
    """Inputs must have the model's dtype and device (cast with ``x.to(model.dtype)`` or load the model in x's)."""
    if x.dtype != weight.dtype:
        raise TypeError(f"{name} is {x.dtype} but the model's weights are {weight.dtype}: cast the input "
                        f"({name}.to({weight.dtype})) or load the model with dtype={x.dtype}")
    if x.device != weight.device:
        raise ValueError(f"{name} is on {x.device} but the model's weights are on {weight.device}: move one of them")


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """No NaN or inf in ``x``: they would flow through the maths and come out as a silent NaN image
    (or, through an index or a clamp, as finite garbage)."""
    if x.numel() and not torch.isfinite(x).all():
        bad = x[~torch.isfinite(x)]
        raise ValueError(f"{name} must be finite, got {bad.numel()} NaN/inf value(s) in a tensor of shape "
                         f"{tuple(x.shape)} (first: {bad.flatten()[0].item()})")
    return x


def check_per_item(value, name: str, like: torch.Tensor, like_name: str):
    """A per-item coefficient (alpha_t, sigma_t, phi_t...) that multiplies the batch ``like``.

    It must be a number, a 0-d tensor (one value for the whole batch) or shaped (B, 1, ..., 1) with
    ``like.ndim`` axes. A (B,) tensor is refused: against (B, C, T, H, W) it would broadcast along W,
    the last axis, not along the batch.
    """
    per_item = f"({like.shape[0]}{', 1' * (like.ndim - 1)})"
    expected = f"a number, a 0-d tensor or a tensor of shape (B{', 1' * (like.ndim - 1)}) = {per_item}"
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be {expected} (to multiply {like_name} {tuple(like.shape)}), got {_describe(value)}")
    if not isinstance(value, torch.Tensor):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{name} must be finite, got {value}")
        return value
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype} (an integer {name} "
                        f"is almost always a timestep passed where alpha_t / sigma_t belong)")
    if value.ndim:
        batch_ok = value.shape[0] in (1, like.shape[0])
        if value.ndim != like.ndim or not batch_ok or any(size != 1 for size in value.shape[1:]):
            hint = (" - per-item values of shape (B,) broadcast along the last axis, not the batch: reshape them "
                    "with minivdm.diffusion.broadcast_per_item(values, like)" if value.ndim == 1 else "")
            raise ValueError(f"{name} must be {expected} to multiply {like_name} {tuple(like.shape)}, "
                             f"got shape {tuple(value.shape)}{hint}")
    return check_finite(value, name)
