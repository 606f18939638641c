"""Visualisation: grids hold the right frames, figures are titled, players embed the video itself,
and slider views call their render function with the values the controls hold."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")  # before anything imports pyplot: no display in tests

import base64
import io
import re

import ipywidgets
import numpy as np
import pytest
import torch
from IPython.display import HTML
from matplotlib.animation import FuncAnimation
from matplotlib.figure import Figure
from PIL import Image, ImageSequence

import minivdm.viz.widgets as widgets_module
from minivdm.io import frames_to_video, video_to_frames
from minivdm.viz import animate, control_for, frame_grid, plot_frames, show_video, slider_view, video_html


def few_colour_batch(num_videos: int = 2, num_frames: int = 4, height: int = 6, width: int = 5,
                     seed: int = 0) -> torch.Tensor:
    """A batch (B, 3, T, H, W) in [-1, 1] whose frames use 8 colours, so GIFs hold it exactly."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(8, 3), dtype=np.uint8)
    frames = palette[rng.integers(0, 8, size=(num_videos, num_frames, height, width))]
    return torch.stack([frames_to_video(video_frames) for video_frames in frames])


# --- frame_grid -------------------------------------------------------------------------------------

def test_frame_grid_puts_video_b_frame_t_in_row_b_column_t():
    batch = few_colour_batch(num_videos=2, num_frames=3, height=6, width=5)
    padding, scale = 2, 3
    grid = frame_grid(batch, padding=padding, scale=scale)
    tile_h, tile_w = 6 * scale, 5 * scale
    assert grid.dtype == np.uint8
    assert grid.shape == (padding + 2 * (tile_h + padding), padding + 3 * (tile_w + padding), 3)
    for b in range(2):
        frames = video_to_frames(batch[b]).repeat(scale, axis=1).repeat(scale, axis=2)
        for t in range(3):
            top = padding + b * (tile_h + padding)
            left = padding + t * (tile_w + padding)
            np.testing.assert_array_equal(grid[top:top + tile_h, left:left + tile_w], frames[t])
    assert (grid[:padding] == 255).all() and (grid[:, :padding] == 255).all()
    assert (grid[padding + tile_h:2 * padding + tile_h] == 255).all()  # the gap between the two rows


def test_frame_grid_of_one_grey_video_is_one_grey_row():
    grey = few_colour_batch(num_videos=1)[0, :1]  # (1, T, H, W)
    grid = frame_grid(grey, padding=0)
    assert grid.shape == (6, 4 * 5, 3)
    assert (grid[..., 0] == grid[..., 1]).all() and (grid[..., 1] == grid[..., 2]).all()
    np.testing.assert_array_equal(grid[:, :5, 0], video_to_frames(grey)[0, :, :, 0])


def test_frame_grid_refuses_bad_input_with_the_layout():
    with pytest.raises(ValueError, match=r"\(C, T, H, W\) or \(B, C, T, H, W\), got shape \(8, 32\)"):
        frame_grid(torch.zeros(8, 32))
    with pytest.raises(ValueError, match="padding"):
        frame_grid(few_colour_batch(), padding=-1)


# --- plot_frames ------------------------------------------------------------------------------------

def test_plot_frames_titles_columns_and_labels_rows():
    batch = few_colour_batch(num_videos=2, num_frames=4)
    figure = plot_frames(batch, title="Two clips", row_labels=["a red circle", "a blue square"])
    assert isinstance(figure, Figure)
    assert figure.get_suptitle() == "Two clips"
    axes = np.array(figure.axes).reshape(2, 4)
    assert [ax.get_title() for ax in axes[0]] == ["frame 0", "frame 1", "frame 2", "frame 3"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["a red circle", "a blue square"]
    for b in range(2):
        for t in range(4):
            np.testing.assert_array_equal(axes[b, t].images[0].get_array(), video_to_frames(batch[b])[t])


def test_plot_frames_has_a_default_title_and_evenly_spaced_frames_when_limited():
    video = few_colour_batch(num_videos=1, num_frames=9)[0]
    figure = plot_frames(video, max_frames=3)
    assert figure.get_suptitle()  # every figure has a title
    assert [ax.get_title() for ax in figure.axes] == ["frame 0", "frame 4", "frame 8"]
    np.testing.assert_array_equal(figure.axes[1].images[0].get_array(), video_to_frames(video)[4])


def test_plot_frames_needs_one_row_label_per_video():
    with pytest.raises(ValueError, match="one label per video"):
        plot_frames(few_colour_batch(num_videos=2), row_labels=["only one"])


# --- animate ----------------------------------------------------------------------------------------

def png_frames_of(animation: FuncAnimation) -> list[np.ndarray]:
    html = animation.to_jshtml()
    encoded = re.findall(r'frames\[\d+\] = "data:image/png;base64,([^"]+)"', html)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))) for data in encoded]


def test_animate_draws_one_picture_per_frame_and_the_pictures_change_with_the_video():
    batch = few_colour_batch(num_videos=2, num_frames=3, height=8, width=8)
    animation = animate(batch, fps=4, title="Samples")
    assert isinstance(animation, FuncAnimation)
    assert animation.event_source.interval == 250  # 4 frames a second
    pictures = png_frames_of(animation)
    assert len(pictures) == 3
    assert not np.array_equal(pictures[0], pictures[1])


def test_animate_of_a_still_video_shows_the_same_picture_apart_from_the_frame_counter():
    still = few_colour_batch(num_videos=1, num_frames=1, height=8, width=8)[0].expand(-1, 3, -1, -1)
    pictures = png_frames_of(animate(still, title="Still"))
    assert len(pictures) == 3
    # The suptitle counts frames, so compare below the title.
    height = pictures[0].shape[0]
    assert np.array_equal(pictures[0][height // 4:], pictures[2][height // 4:])


# --- inline players ---------------------------------------------------------------------------------

def decoded_gifs(html: str) -> list[np.ndarray]:
    sources = re.findall(r'src="data:image/gif;base64,([^"]+)"', html)
    gifs = []
    for data in sources:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            gifs.append(np.stack([np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]))
    return gifs


def test_video_html_embeds_the_video_itself_as_a_gif_data_uri():
    video = few_colour_batch(num_videos=1, num_frames=4)[0]
    html = video_html(video, scale=2, caption="a <b>red</b> circle")
    [gif] = decoded_gifs(html)
    np.testing.assert_array_equal(gif, video_to_frames(video).repeat(2, axis=1).repeat(2, axis=2))
    assert "a &lt;b&gt;red&lt;/b&gt; circle" in html and "<b>" not in html


def test_a_batch_becomes_a_row_of_players_with_a_caption_below_each():
    batch = few_colour_batch(num_videos=3, num_frames=2)
    html = video_html(batch, scale=1, caption=["first", "second", "third"])
    gifs = decoded_gifs(html)
    assert len(gifs) == 3
    for b in range(3):
        np.testing.assert_array_equal(gifs[b], video_to_frames(batch[b]))
    assert [html.index(text) for text in ("first", "second", "third")] == sorted(
        html.index(text) for text in ("first", "second", "third"))
    assert html.count("<figcaption") == 3
    with pytest.raises(ValueError, match="one str per video"):
        video_html(batch, caption=["only one"])


def test_mp4_players_use_a_video_tag_and_show_video_wraps_the_same_html():
    video = few_colour_batch(num_videos=1, num_frames=3, height=8, width=8)[0]
    html = video_html(video, format="mp4")
    assert "<video" in html and 'src="data:video/mp4;base64,' in html and "autoplay" in html
    shown = show_video(video, format="mp4")
    assert isinstance(shown, HTML) and shown.data == html
    with pytest.raises(ValueError, match="gif, mp4"):
        video_html(video, format="avi")


# --- slider_view ------------------------------------------------------------------------------------

def controls_of(view: ipywidgets.Widget) -> dict[str, ipywidgets.ValueWidget]:
    return {control.description: control for control in view.children[0].children}


def test_slider_view_renders_at_once_and_again_with_each_new_value():
    calls = []

    def render(t, steps, sampler, guided):
        calls.append(dict(t=t, steps=steps, sampler=sampler, guided=guided))
        return None

    view = slider_view(render, t=(0.0, 1.0, 0.1), steps=(1, 50, 1, 10), sampler=["ddim", "ddpm"], guided=True)
    assert isinstance(view, ipywidgets.Widget)
    assert calls == [dict(t=0.0, steps=10, sampler="ddim", guided=True)]
    controls = controls_of(view)
    assert isinstance(controls["t"], ipywidgets.FloatSlider)
    assert isinstance(controls["steps"], ipywidgets.IntSlider)
    assert isinstance(controls["sampler"], ipywidgets.Dropdown)
    assert isinstance(controls["guided"], ipywidgets.Checkbox)

    controls["t"].value = 0.7
    assert calls[-1] == dict(t=0.7, steps=10, sampler="ddim", guided=True)
    controls["sampler"].value = "ddpm"
    assert calls[-1] == dict(t=0.7, steps=10, sampler="ddpm", guided=True)
    assert len(calls) == 3


def test_slider_view_shows_figures_and_image_arrays_as_png(monkeypatch):
    shown = []
    monkeypatch.setattr(widgets_module, "display", shown.append)
    grid = frame_grid(few_colour_batch(num_videos=1, num_frames=2), padding=0)  # 6 x 10 pixels

    slider_view(lambda as_figure: plot_frames(few_colour_batch()) if as_figure else grid, as_figure=False)
    png = Image.open(io.BytesIO(shown[-1].data))
    zoom = png.size[1] // grid.shape[0]
    assert zoom > 1  # tiny images are enlarged
    np.testing.assert_array_equal(np.asarray(png.convert("RGB")), grid.repeat(zoom, axis=0).repeat(zoom, axis=1))

    slider_view(lambda as_figure: plot_frames(few_colour_batch()) if as_figure else grid, as_figure=True)
    assert shown[-1].data[:8] == b"\x89PNG\r\n\x1a\n"


def test_control_specs_that_are_not_understood_say_what_is():
    with pytest.raises(TypeError, match=r"\(min, max, step\)"):
        control_for("t", {"min": 0})
    with pytest.raises(ValueError, match="min < max"):
        control_for("t", (1.0, 0.0, 0.1))
    with pytest.raises(TypeError, match="render must be a function"):
        slider_view("not a function", t=(0, 1, 1))


def test_plot_images_lays_out_rows_of_images_with_labels():
    import numpy as np
    import torch

    from minivdm.viz import plot_images

    images = torch.linspace(-1, 1, 10).view(10, 1, 1, 1).expand(10, 3, 4, 4).contiguous()
    figure = plot_images(images, columns=4, title="ten images", row_labels=["a", "b", "c"])
    axis = figure.axes[0]
    assert axis.get_title() == "ten images"
    assert [label.get_text() for label in axis.get_yticklabels()] == ["a", "b", "c"]
    grid = axis.images[0].get_array()
    assert grid.shape[:2] == (1 + 3 * (2 * 4 + 1), 1 + 4 * (2 * 4 + 1))
    assert np.all(grid[1, 1] == 0)  # the first image is black (-1)
    import pytest

    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        plot_images(images[0], title="x")


def test_slider_labels_are_wide_enough_for_the_longest_name():
    view = slider_view(lambda min_text_similarity, t, show: None, min_text_similarity=(0.0, 1.0, 0.01), t=(0, 3, 1),
                       show=True)
    controls = controls_of(view)
    # ipywidgets' default (~80 px) cuts "min_text_similarity"; every label gets the longest name's width
    assert controls["min_text_similarity"].style.description_width == "21ch"
    assert controls["t"].style.description_width == "21ch"


def test_guidance_plot_draws_accuracy_with_its_interval_and_diversity():
    from minivdm.viz.guidance_plots import plot_guidance_sweep

    results = [{"guidance_scale": w, "caption_accuracy": a, "prompts": 48, "interval": (a - 0.1, a + 0.05), "diversity": d}
               for w, a, d in [(1.0, 0.8, 0.2), (3.0, 0.9, 0.1)]]
    left, right = plot_guidance_sweep(results).axes
    assert list(left.lines[0].get_ydata()) == [0.8, 0.9] and list(right.lines[0].get_ydata()) == [0.2, 0.1]
    bars = left.collections[0].get_segments()  # the interval of each point, from low to high
    assert [tuple(round(y, 6) for y in segment[:, 1]) for segment in bars] == [(0.7, 0.85), (0.8, 0.95)]
    assert "48 prompts" in left.get_title()
    with pytest.raises(ValueError, match="guidance_sweep"):
        plot_guidance_sweep([{"guidance_scale": 1.0}])


def test_frame_influence_is_diagonal_for_a_per_frame_model_and_fills_with_temporal_mixing():
    from minivdm.viz.frame_influence import frame_influence, plot_frame_influence

    video = torch.randn(1, 3, 5, 4, 4)
    per_frame = frame_influence(lambda x: 2 * x, video)
    assert torch.allclose(per_frame, torch.eye(5), atol=1e-6), "each frame reads only itself"
    neighbours = frame_influence(lambda x: x + x.roll(1, dims=2), video)  # frame i also reads frame i - 1
    assert neighbours[2, 1] > 0 and neighbours[2, 3] == 0 and neighbours[0, 4] > 0
    figure = plot_frame_influence(neighbours, title="t")
    assert figure.axes[0].get_xlabel() == "input frame changed"
    with pytest.raises(ValueError, match="one clip"):
        frame_influence(lambda x: x, torch.randn(2, 3, 5, 4, 4))
