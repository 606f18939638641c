"""Figures of the data-curation chapter: the cut detector's signals over time, and which clips a set of
thresholds keeps and why. Pure functions of their inputs; the notebook's widgets call them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from minivdm.viz.frames import frame_grid

TRANSITION_COLOURS = {"cut": "tab:red", "fade": "tab:orange"}


def _spans(transitions) -> list[tuple[int, str, int]]:
    """(start, kind, length) of Transition objects or of the footage's label tuples."""
    return [(t.start, t.kind, t.length) if hasattr(t, "kind") else tuple(t) for t in transitions]


def plot_cut_signals(signals: dict[str, torch.Tensor], *, fps: float, detected=(), truth=(),
                     cut_threshold: float | None = None, fade_threshold: float | None = None,
                     title: str = "Cut detection: how much the picture changes, watched at several frame rates") -> Figure:
    """The cascade's distance curves d_s(t) (one line per stride), the detections shaded, the truth marked.

    With ``cut_threshold`` the cut score (the quantity a hard cut is tested on: the one-frame step minus
    rho times the largest step nearby) is drawn with the threshold tau_cut it is compared with; with
    ``fade_threshold`` the line tau_fade, which the change across a whole fade must reach.
    ``signals``: ``minivdm.curation.cuts.cut_signals`` output; ``detected`` and ``truth``: transitions.
    """
    strides = sorted((int(name.split("_")[1]), curve) for name, curve in signals.items()
                     if name.startswith("stride_"))
    if not strides:
        raise ValueError(f"signals must hold 'stride_<s>' curves (from cut_signals), got keys {sorted(signals)}")
    figure, axis = plt.subplots(figsize=(10, 4.4))
    for stride, curve in strides:
        frames = np.arange(len(curve))
        axis.plot(frames, curve.numpy(), label=f"d(t, t+{stride}): watched at {fps / stride:g} fps", lw=1.2)
    if cut_threshold is not None:
        score = signals["cut_score"].numpy()
        axis.plot(np.arange(len(score)), score, color="black", lw=1.4, ls="--",
                  label="cut score d(t, t+1) - rho * max nearby step (tested for a cut)")
        axis.axhline(cut_threshold, color="tab:red", lw=1, label=f"tau_cut = {cut_threshold:g}: a cut needs score >= it")
    if fade_threshold is not None:
        axis.axhline(fade_threshold, color="tab:orange", lw=1,
                     label=f"tau_fade = {fade_threshold:g}: the change across a fade must reach it")
    for start, kind, length in _spans(detected):
        axis.axvspan(start - 1, start + length, color=TRANSITION_COLOURS[kind], alpha=0.25)
    for start, kind, length in _spans(truth):
        axis.axvline(start - 0.5, color="black", ls=":", lw=1)
    handles, labels = axis.get_legend_handles_labels()
    handles += [Patch(color=colour, alpha=0.25) for colour in TRANSITION_COLOURS.values()]
    labels += [f"detected {kind}" for kind in TRANSITION_COLOURS]
    if truth:
        handles.append(plt.Line2D([], [], color="black", ls=":"))
        labels.append("true transition")
    # below the axes: over them it would hide the curves it explains
    axis.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3)
    axis.set_xlabel("frame t")
    axis.set_ylabel("distance d (0 = same picture)")
    axis.set_title(title)
    figure.tight_layout()
    return figure


def _verdict(record) -> str:
    return "KEEP" if record.keep else "drop: " + ", ".join(record.failed)


def _score_text(record) -> str:
    parts = []
    for name, value in (("motion", record.motion), ("text", record.text_area), ("aesthetic", record.aesthetic),
                        ("caption sim", record.text_similarity)):
        if value is not None:
            parts.append(f"{name} {value:.2f}")
    return "\n".join(parts)


def plot_clip_verdicts(video: torch.Tensor, records, *, labels: list[str] | None = None,
                       title: str = "Which clips survive, and why") -> Figure:
    """One column per clip: its first, middle and last frame, its scores and the verdict.

    ``video``: the source video (3, T, H, W) in [-1, 1]; ``records``: its ClipRecords; ``labels``: an
    optional line per clip (e.g. the footage's true kind).
    """
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[0] != 3:
        got = tuple(video.shape) if isinstance(video, torch.Tensor) else type(video).__name__
        raise ValueError(f"video must be (3, T, H, W) in [-1, 1], got {got}")
    if not records:
        raise ValueError("records is empty: there are no clips to show")
    if labels is not None and len(labels) != len(records):
        raise ValueError(f"labels must have one entry per record ({len(records)}), got {len(labels)}")
    figure, axes = plt.subplots(1, len(records), figsize=(2.1 * len(records), 4.0), squeeze=False)
    for column, (axis, record) in enumerate(zip(axes[0], records)):
        key = [record.start, (record.start + record.end - 1) // 2, record.end - 1]
        # first, middle and last frame stacked top to bottom
        grid = frame_grid(rearrange(video[:, key], "c k h w -> k c 1 h w"), padding=1)
        axis.imshow(grid, interpolation="nearest")
        axis.set_xticks([])
        axis.set_yticks([])
        colour = "tab:green" if record.keep else "tab:red"
        for side in axis.spines.values():
            side.set_edgecolor(colour)
            side.set_linewidth(3)
        heading = f"frames {record.start}-{record.end - 1}"
        if labels is not None:
            heading = f"{labels[column]}\n{heading}"
        axis.set_title(heading, fontsize=8)
        axis.set_xlabel(f"{_score_text(record)}\n{_verdict(record)}", fontsize=7, color=colour)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
