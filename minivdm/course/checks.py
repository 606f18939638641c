"""Checks for exercise notebooks. When a learner's answer is wrong they say what was expected:
the shape, the value, where the first mismatch is, or that the function is not written yet.

Each raises ``AssertionError`` (what a failing check cell shows) and prints a short "passed" line
when the answer is right.
"""

from __future__ import annotations

from typing import Any, Callable

import torch


def check_close(actual: Any, expected: torch.Tensor, name: str, *, atol: float = 1e-5, hint: str = "") -> None:
    """Assert that ``actual`` is a tensor with ``expected``'s shape and values (within ``atol``)."""
    hint_text = f"\nHint: {hint}" if hint else ""
    if actual is None:
        raise AssertionError(f"{name} is None: did your function forget to `return` its result?{hint_text}")
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{name} should be a torch.Tensor, got {type(actual).__name__}{hint_text}")
    if actual.shape != expected.shape:
        raise AssertionError(f"{name} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}{hint_text}")
    error = (actual.to(expected.dtype) - expected).abs()
    if not torch.isfinite(actual).all():
        raise AssertionError(f"{name} contains NaN or inf values: look for a division by a value that can be 0{hint_text}")
    if error.max() > atol:
        index = tuple(int(i) for i in torch.nonzero(error == error.max())[0])
        raise AssertionError(
            f"{name} is off by up to {error.max().item():.4g} (allowed {atol:g}). At index {index} it is "
            f"{actual[index].item():.5g}, expected {expected[index].item():.5g}.{hint_text}"
        )
    print(f"passed: {name} matches (max error {error.max().item():.2g})")


def check_function_output(function: Callable, args: tuple, expected: torch.Tensor, *, atol: float = 1e-5,
                          hint: str = "") -> None:
    """Call the learner's ``function(*args)`` and compare its result with ``expected``."""
    name = getattr(function, "__name__", "your function")
    try:
        actual = function(*args)
    except NotImplementedError:
        raise AssertionError(f"{name} is not written yet: replace the `raise NotImplementedError` with your code."
                             + (f"\nHint: {hint}" if hint else "")) from None
    check_close(actual, expected, f"{name}(...)", atol=atol, hint=hint)
