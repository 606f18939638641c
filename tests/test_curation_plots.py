"""The curation chapter's figures show what they claim: one curve per cascade level, detections where they
were found, a green frame around kept clips and a red one, with the failed filters, around dropped ones."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.colors import to_rgba

from minivdm.curation.cuts import Transition
from minivdm.curation.pipeline import ClipRecord
from minivdm.viz.curation_plots import plot_clip_verdicts, plot_cut_signals


def test_cut_signal_plot_has_a_curve_per_stride_and_shades_detections():
    signals = {"stride_1": torch.rand(20), "stride_4": torch.rand(20), "cut_score": torch.rand(20)}
    figure = plot_cut_signals(signals, fps=8, detected=[Transition(5, "cut", 0), Transition(10, "fade", 3)],
                              truth=[(5, "cut", 0)])
    axis = figure.axes[0]
    labels = [line.get_label() for line in axis.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["d(t, t+1): watched at 8 fps", "d(t, t+4): watched at 2 fps"]
    spans = [patch for patch in axis.patches]
    assert len(spans) == 2
    with pytest.raises(ValueError, match="stride_"):
        plot_cut_signals({"cut_score": torch.rand(5)}, fps=8)


def test_verdict_plot_frames_kept_clips_green_and_names_failed_filters():
    video = torch.rand(3, 20, 8, 8) * 2 - 1
    records = [ClipRecord(source="", start=0, end=10, fps=8.0, motion=0.1, text_area=0.0, keep=True),
               ClipRecord(source="", start=10, end=20, fps=8.0, motion=0.0, text_area=0.3, keep=False,
                          failed=["motion", "text"])]
    figure = plot_clip_verdicts(video, records, labels=["normal", "static"])
    kept, dropped = figure.axes
    assert kept.spines["top"].get_edgecolor() == to_rgba("tab:green")
    assert dropped.spines["top"].get_edgecolor() == to_rgba("tab:red")
    assert "drop: motion, text" in dropped.get_xlabel() and "KEEP" in kept.get_xlabel()
    assert kept.get_title().startswith("normal")
    # the tile column holds the first, middle and last frame: 3 rows of 8 pixels plus 1-pixel borders
    assert kept.get_images()[0].get_array().shape[:2] == (1 + 3 * 9, 1 + 9)
    with pytest.raises(ValueError, match=r"\(3, T, H, W\)"):
        plot_clip_verdicts(video[None], records)
    with pytest.raises(ValueError, match="one entry per record"):
        plot_clip_verdicts(video, records, labels=["x"])


def test_cut_signal_plot_draws_the_cut_score_against_its_threshold():
    score = torch.rand(20)
    signals = {"stride_1": torch.rand(20), "cut_score": score}
    axis = plot_cut_signals(signals, fps=8, cut_threshold=0.3, fade_threshold=0.15).axes[0]
    lines = {line.get_label(): line for line in axis.get_lines()}
    compared = next(line for label, line in lines.items() if label.startswith("cut score"))
    assert (compared.get_ydata() == score.numpy()).all()  # the quantity actually tested, not a stride curve
    thresholds = {label.split(":")[0]: line.get_ydata()[0] for label, line in lines.items() if label.startswith("tau")}
    assert thresholds == {"tau_cut = 0.3": 0.3, "tau_fade = 0.15": 0.15}
