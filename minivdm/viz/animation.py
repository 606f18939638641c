"""A video as a matplotlib animation: one panel per video in the batch, all playing in step.

The figure is built without pyplot, so nothing is shown as a side effect. In a notebook, display it
with ``IPython.display.HTML(anim.to_jshtml())`` (a player with a slider), or save it with
``anim.save("clip.gif")``. For a plain looping video, ``minivdm.viz.show_video`` is lighter.
"""

from __future__ import annotations

from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure

from minivdm.validation import check_positive_int
from minivdm.viz.frames import batch_to_frames


def animate(video, *, fps: int = 8, title: str | None = None) -> FuncAnimation:
    """Animate one video (C, T, H, W) or a batch (B, C, T, H, W) side by side at ``fps`` frames a second.

    The figure title shows the current frame ("... t=3/7"); panels are labelled "b=0", "b=1", ...
    """
    check_positive_int(fps, "fps")
    frames = batch_to_frames(video)
    num_videos, num_frames = frames.shape[:2]
    if title is None:
        title = "Video" if num_videos == 1 else f"{num_videos} videos"

    figure = Figure(figsize=(2.4 * num_videos, 2.8), layout="constrained")
    axes = figure.subplots(1, num_videos, squeeze=False)[0]
    images = []
    for b, ax in enumerate(axes):
        images.append(ax.imshow(frames[b, 0], interpolation="nearest"))
        ax.set_xticks([])
        ax.set_yticks([])
        if num_videos > 1:
            ax.set_xlabel(f"b={b}")
    heading = figure.suptitle(f"{title}  frame 0/{num_frames - 1}")

    def draw_frame(t: int):
        for b, image in enumerate(images):
            image.set_data(frames[b, t])
        heading.set_text(f"{title}  frame {t}/{num_frames - 1}")
        return [*images, heading]

    return FuncAnimation(figure, draw_frame, frames=num_frames, interval=1000 / fps)
