"""Videos that play inside a notebook cell, in JupyterLab and Colab alike.

The encoded file is embedded in the HTML itself as a base64 data URI
(``<img src="data:image/gif;base64,...">``), so no file is written to disk and nothing has to be
served: the video travels with the notebook. A batch becomes a row of players, captions below.
``video_html`` builds the HTML string (what tests check); ``show_video`` wraps it for display.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from IPython.display import HTML

from minivdm.io.video_files import encode_video, to_rgb_batch
from minivdm.validation import check_positive_int

MIME_TYPES = {"gif": "image/gif", "mp4": "video/mp4"}


def _player(data: bytes, format: str) -> str:
    source = f"data:{MIME_TYPES[format]};base64,{base64.b64encode(data).decode('ascii')}"
    # pixelated: if the page rescales the video, keep the pixels square instead of blurring them.
    style = "image-rendering: pixelated; display: block;"
    if format == "gif":
        return f'<img src="{source}" style="{style}" alt="video">'
    # Browsers only autoplay videos that are muted.
    return f'<video src="{source}" style="{style}" autoplay loop muted playsinline controls></video>'


def _caption_html(text: str, width: int) -> str:
    return (f'<figcaption style="font-size: 0.9em; max-width: {max(width, 120)}px; text-align: center;">'
            f"{html.escape(text)}</figcaption>")


def video_html(video, *, fps: int = 8, scale: int = 4, format: str = "gif",
               caption: str | Sequence[str] | None = None) -> str:
    """HTML that plays one video (C, T, H, W), or a batch (B, C, T, H, W) as a row of players.

    ``format`` is "gif" (plays everywhere, loops, exact for few-colour frames) or "mp4" (H.264,
    smaller for long or detailed videos). ``caption`` is one string (below the video, or below the
    whole row for a batch) or a list with one string per video.
    """
    if format not in MIME_TYPES:
        raise ValueError(f"format must be one of {', '.join(MIME_TYPES)}, got {format!r}")
    check_positive_int(fps, "fps")
    check_positive_int(scale, "scale")
    batch = to_rgb_batch(video)
    num_videos = batch.shape[0]
    width = batch.shape[-1] * scale

    if caption is None or isinstance(caption, str):
        per_video, below_row = [None] * num_videos, caption
    elif isinstance(caption, Sequence) and all(isinstance(text, str) for text in caption):
        if len(caption) != num_videos:
            raise ValueError(f"caption must be a str or a list with one str per video ({num_videos}), "
                             f"got {len(caption)} captions")
        per_video, below_row = list(caption), None
    else:
        raise TypeError(f"caption must be a str or a list of str, got {type(caption).__name__}")
    if num_videos == 1 and below_row is not None:
        per_video, below_row = [below_row], None

    figures = []
    for one_video, text in zip(batch, per_video):
        data = encode_video(one_video, format=format, fps=fps, scale=scale)
        figure = _player(data, format)
        if text is not None:
            figure += _caption_html(text, width)
        figures.append(f'<figure style="margin: 0;">{figure}</figure>')

    row = ('<div style="display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start;">'
           + "".join(figures) + "</div>")
    if below_row is not None:
        row += f'<p style="font-size: 0.9em; margin-top: 4px;">{html.escape(below_row)}</p>'
    return row


def show_video(video, *, fps: int = 8, scale: int = 4, format: str = "gif",
               caption: str | Sequence[str] | None = None) -> HTML:
    """Display-ready HTML of ``video_html``: return it from a cell, or pass it to ``display``."""
    return HTML(video_html(video, fps=fps, scale=scale, format=format, caption=caption))
