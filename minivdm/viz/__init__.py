"""Seeing videos: frame grids, figures, animations, inline players and interactive views.

Everything here takes minivdm's layout, one video (C, T, H, W) or a batch (B, C, T, H, W) in
[-1, 1], and is a pure function that returns something to display; widgets are thin wrappers.
"""

from minivdm.viz.animation import animate
from minivdm.viz.frames import batch_to_frames, frame_grid, plot_frames, plot_images
from minivdm.viz.inline import show_video, video_html
from minivdm.viz.widgets import control_for, slider_view

__all__ = [
    "animate",
    "batch_to_frames",
    "control_for",
    "frame_grid",
    "plot_frames",
    "plot_images",
    "show_video",
    "slider_view",
    "video_html",
]
