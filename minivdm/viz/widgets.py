"""Interactive views: sliders and menus that re-run a render function and show what it returns.

The widget is thin on purpose. All the work happens in ``render``, a plain function that tests and
readers can call directly; ``slider_view`` only turns keyword specs into controls and redraws
``render(**values)`` whenever a control changes:

    slider_view(lambda t, show_noise: plot_frames(noisy(video, t) if show_noise else video),
                t=(0.0, 1.0, 0.05), show_noise=True)

Spec to control: ``(min, max, step)`` or ``(min, max, step, start)`` (start defaults to min) ->
IntSlider when every number is an int, else FloatSlider; a list or tuple of strings -> Dropdown;
``True``/``False`` -> Checkbox; an ipywidgets control is used as it is. Building a view needs no
display, so tests can drive it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from numbers import Real

import ipywidgets
import numpy as np
from einops import repeat
from IPython.display import Image, display
from matplotlib.figure import Figure
from PIL import Image as PILImage

SPEC_FORMS = ("(min, max, step) or (min, max, step, start) for a slider, a list of str for a dropdown, "
              "a bool for a checkbox, or an ipywidgets control")
# Arrays are shown at an integer zoom so that a 32x32 frame is not a speck, within this size.
SMALL_SIDE_TARGET = 256
LARGE_SIDE_LIMIT = 1200


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _slider(name: str, spec: tuple) -> ipywidgets.ValueWidget:
    low, high, step = spec[:3]
    start = spec[3] if len(spec) == 4 else low
    if not low < high or not step > 0 or not low <= start <= high:
        raise ValueError(f"slider {name!r} needs min < max, step > 0 and min <= start <= max, got {spec!r}")
    if all(isinstance(value, int) for value in spec):
        widget_type = ipywidgets.IntSlider
    else:
        widget_type = ipywidgets.FloatSlider
        low, high, step, start = float(low), float(high), float(step), float(start)
    # Redraw when the slider is released, not at every pixel of a drag: a render may run a model.
    return widget_type(min=low, max=high, step=step, value=start, description=name, continuous_update=False)


def control_for(name: str, spec) -> ipywidgets.ValueWidget:
    """The control that a ``slider_view`` keyword spec stands for (see the module docstring)."""
    if isinstance(spec, ipywidgets.ValueWidget):
        return spec
    if isinstance(spec, bool):
        return ipywidgets.Checkbox(value=spec, description=name)
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(option, str) for option in spec):
        return ipywidgets.Dropdown(options=list(spec), value=spec[0], description=name)
    if isinstance(spec, tuple) and len(spec) in (3, 4) and all(_is_number(value) for value in spec):
        return _slider(name, spec)
    raise TypeError(f"control {name!r} must be {SPEC_FORMS}, got {spec!r}")


def _png_of_array(image: np.ndarray) -> bytes:
    is_image = image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3, 4))
    if image.dtype != np.uint8 or not is_image:
        raise TypeError("render returned an array that is not a uint8 image (H, W), (H, W, 3) or (H, W, 4), "
                        f"got dtype {image.dtype} and shape {image.shape}; use minivdm.viz.frame_grid for videos")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    small_side, large_side = min(image.shape[:2]), max(image.shape[:2])
    zoom = max(1, min(SMALL_SIDE_TARGET // small_side, LARGE_SIDE_LIMIT // large_side))
    # Nearest-neighbour zoom keeps the pixels of tiny videos sharp.
    image = repeat(image, "h w ... -> (h zh) (w zw) ...", zh=zoom, zw=zoom)
    buffer = io.BytesIO()
    PILImage.fromarray(image).save(buffer, format="png")
    return buffer.getvalue()


def _show_result(result) -> None:
    """Display what a render function returned: a Figure or an image array as a PNG, else as itself."""
    if result is None:
        return  # the render function displayed its own output
    if isinstance(result, Figure):
        buffer = io.BytesIO()
        result.savefig(buffer, format="png")
        # A figure made with pyplot would also be drawn by the notebook backend: close it (no-op otherwise).
        import matplotlib.pyplot as plt
        plt.close(result)
        display(Image(data=buffer.getvalue(), format="png"))
    elif isinstance(result, np.ndarray):
        display(Image(data=_png_of_array(result), format="png"))
    else:
        display(result)


def slider_view(render: Callable, **controls) -> ipywidgets.Widget:
    """Controls above an output area that shows ``render(**values)`` and redraws when a control changes.

    ``render`` returns a matplotlib Figure, a uint8 image array (H, W, 3) such as ``frame_grid``'s, or
    anything IPython can display (``show_video``'s HTML). Each keyword names one of its parameters.
    """
    if not callable(render):
        raise TypeError(f"render must be a function returning a Figure, an image array or HTML, "
                        f"got {type(render).__name__}")
    widgets = {name: control_for(name, spec) for name, spec in controls.items()}
    # ipywidgets cuts descriptions at ~80 px ("min_text_simi..."): make room for the longest name
    label_width = f"{max((len(name) for name in widgets), default=0) + 2}ch"
    for widget in widgets.values():
        if not isinstance(widget, ipywidgets.Checkbox):  # a checkbox's label sits to its right, uncut
            widget.style.description_width = label_width

    def redraw(**values):
        _show_result(render(**values))

    # interactive_output draws once now, then again whenever any control's value changes.
    output = ipywidgets.interactive_output(redraw, widgets)
    return ipywidgets.VBox([ipywidgets.VBox(list(widgets.values())), output])
