"""Checks for exercise notebooks. When a learner's answer is wrong they say what was expected:
the shape, the value, where the first mismatch is, or that the function is not written yet.

Each raises ``CheckFailed`` (an ``AssertionError``) and prints a short "passed" line when the answer
is right. In Jupyter a ``CheckFailed`` shows its message first and then only the lines of the notebook
that led to it, not a long traceback through this module with the message at the bottom.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_RED, _RESET = "\x1b[0;31m", "\x1b[0m"


def _in_notebook_code(filename: str) -> bool:
    """True for a frame in the learner's cells (or any file outside minivdm and the Python installation)."""
    path = Path(filename).resolve()
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return not filename.startswith("<frozen") and _PACKAGE_DIR not in path.parents \
        and not any(root in path.parents for root in installed)


class CheckFailed(AssertionError):
    """A check that did not pass. ``str(error)`` is the teaching message.

    IPython calls ``_render_traceback_`` instead of formatting a traceback: the message comes first,
    then the notebook lines that led to the failure (the check cell's call, and when the learner's
    function itself raised, the line of the learner's code that raised).
    """

    def _render_traceback_(self) -> list[str]:
        lines = [f"{_RED}{type(self).__name__}{_RESET}: {self}"]
        frames = [frame for frame in traceback.extract_tb(self.__traceback__) if _in_notebook_code(frame.filename)]
        cause = self.__cause__
        if cause is not None:
            frames += [frame for frame in traceback.extract_tb(cause.__traceback__) if _in_notebook_code(frame.filename)]
        if frames:
            lines.append("")
            lines.append("where (your notebook):")
            for frame in frames[-3:]:
                where = "the cell" if frame.name == "<module>" else frame.name
                lines.append(f"  line {frame.lineno} in {where}: {(frame.line or '').strip()}")
        return lines


def _with_hint(message: str, hint: str) -> str:
    return f"{message}\nHint: {hint}" if hint else message


def check_that(condition: bool, message: str) -> None:
    """Fail with ``message`` (say what was expected and what was found) unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def check_equal(actual: Any, expected: Any, name: str, *, hint: str = "") -> None:
    """Assert that a plain Python value (a list of ints, a float) is exactly ``expected``."""
    if actual != expected:
        raise CheckFailed(_with_hint(f"{name} is {actual!r}, expected {expected!r}.", hint))
    print(f"passed: {name} == {expected!r}")


def check_close(actual: Any, expected: torch.Tensor, name: str, *, atol: float = 1e-5, hint: str = "") -> None:
    """Assert that ``actual`` is a tensor with ``expected``'s shape and values (within ``atol``)."""
    if actual is None:
        raise CheckFailed(_with_hint(f"{name} is None: did your function forget to `return` its result?", hint))
    if not isinstance(actual, torch.Tensor):
        raise CheckFailed(_with_hint(f"{name} should be a torch.Tensor, got {type(actual).__name__}", hint))
    if actual.shape != expected.shape:
        raise CheckFailed(_with_hint(f"{name} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}", hint))
    error = (actual.to(expected.dtype) - expected).abs()
    if not torch.isfinite(actual).all():
        raise CheckFailed(_with_hint(f"{name} contains NaN or inf values: look for a division by a value that can be 0",
                                     hint))
    if error.max() > atol:
        index = tuple(int(i) for i in torch.nonzero(error == error.max())[0])
        raise CheckFailed(_with_hint(
            f"{name} is off by up to {error.max().item():.4g} (allowed {atol:g}). At index {index} it is "
            f"{actual[index].item():.5g}, expected {expected[index].item():.5g}.", hint))
    print(f"passed: {name} matches (max error {error.max().item():.2g})")


def check_function_output(function: Callable, args: tuple, expected: Any, *, atol: float = 1e-5,
                          hint: str = "", case: str = "") -> None:
    """Call the learner's ``function(*args)`` and compare its result with ``expected``: within ``atol``
    for a tensor or a float (then the answer must be a Python float), exactly for any other value
    (a list of frame numbers).

    ``case`` names what is special about these inputs ("with one time per batch item"), so that a
    failure says which situation the answer does not handle.
    """
    name = getattr(function, "__name__", "your function")
    label = f"{name}(...){' ' + case if case else ''}"
    try:
        actual = function(*args)
    except NotImplementedError:
        raise CheckFailed(_with_hint(f"{name} is not written yet: replace the `raise NotImplementedError` with your code.",
                                     hint)) from None
    except Exception as error:  # the learner's code raised: say so first, keep the line that raised
        raise CheckFailed(_with_hint(f"{label} raised {type(error).__name__}: {error}", hint)) from error
    if isinstance(expected, torch.Tensor):
        check_close(actual, expected, label, atol=atol, hint=hint)
    elif isinstance(expected, float):
        check_that(isinstance(actual, (float, int)) and not isinstance(actual, bool),
                   _with_hint(f"{label} should be a Python float (use float(...)), got {type(actual).__name__}", hint))
        check_close(torch.tensor(float(actual), dtype=torch.float64), torch.tensor(expected, dtype=torch.float64), label,
                    atol=atol, hint=hint)
    else:
        check_equal(actual, expected, label, hint=hint)
