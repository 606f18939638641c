"""What the first cell of every notebook calls: pick the device, fix the seeds, set plot defaults."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def setup_notebook(seed: int = 0, *, threads: int | None = None) -> torch.device:
    """Seed python, numpy and torch; return the GPU when there is one, else the CPU.

    ``MINIVDM_DEVICE=cpu`` forces the CPU (tests do, so results match the text).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    import matplotlib

    matplotlib.rcParams.update({"figure.dpi": 90, "axes.titlesize": 10, "image.interpolation": "nearest"})
    _show_figures_inline()
    requested = os.environ.get("MINIVDM_DEVICE")
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _show_figures_inline() -> None:
    """minivdm.viz returns matplotlib Figures; in a notebook, make a returned Figure display as an image."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "kernel"):
        shell.run_line_magic("matplotlib", "inline")


def show_source(obj) -> "IPython.display.Code":  # noqa: F821
    """Show the real source of a minivdm function or class in a notebook, highlighted."""
    import inspect

    from IPython.display import Code

    return Code(inspect.getsource(obj), language="python")
