"""The text-area estimator finds rendered text (toy caption bars, real PIL words) at any scale, covers
about the right area, and stays silent on shapes, textures, noise and fades."""

import numpy as np
import pytest
import torch

from minivdm.curation.text_area import (
    TEXT_AREA_THRESHOLD,
    benchmark_footage_text,
    clip_text_area,
    connected_components,
    text_area,
    text_boxes,
    text_mask,
)
from minivdm.toyworld.footage import TEXT_BAR_VALUE, TEXT_VALUE, make_footage

NON_TEXT_KINDS = ("normal", "static", "low_quality")


def upscale(x, factor):
    """Nearest-neighbour enlargement of the last two axes."""
    return x.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def bar_fraction(clip):
    """True caption-bar area: pixels holding the bar or glyph value in every channel and frame."""
    return float(((clip == TEXT_BAR_VALUE) | (clip == TEXT_VALUE)).all(dim=0).all(dim=0).float().mean())


def bar_rows(clip):
    rows = torch.nonzero(((clip == TEXT_BAR_VALUE) | (clip == TEXT_VALUE)).all(dim=0).all(dim=0).all(dim=1))
    return int(rows.min()), int(rows.max()) + 1


@pytest.mark.parametrize("size, factor", [(32, 1), (64, 1), (32, 4)])
def test_caption_bar_is_found_with_about_its_area(size, factor):
    for seed in range(3):
        footage = make_footage(seed, kinds=("text_overlay",), clip_frames=4, size=size)
        clip = upscale(footage.video, factor)
        area, truth = clip_text_area(clip), bar_fraction(clip)
        assert area > TEXT_AREA_THRESHOLD
        assert abs(area - truth) < 0.04, (seed, area, truth)
        # Every box lies on the bar, none on the scene above it, and stops within a margin (a fifth of
        # the 5-glyph-pixel line height) of the glyphs, not stretched to the frame's border.
        top, bottom = bar_rows(clip)
        glyph_columns = torch.nonzero((clip == TEXT_VALUE).all(dim=0).all(dim=0).any(dim=0)).flatten()
        line_height = 5 * (size // 32) * factor
        for box in text_boxes(clip[:, 0]):
            assert top <= box[0] and box[2] <= bottom, (box, top, bottom)
            assert box[3] - (int(glyph_columns.max()) + 1) <= 0.25 * line_height, (box, glyph_columns.max())


def test_boxes_follow_nearest_upscaling():
    """4x nearest footage is seen exactly as the original at the pyramid's third octave."""
    for seed in range(3):
        frame = make_footage(seed, kinds=("text_overlay",), clip_frames=2).video[:, 0]
        small = text_boxes(frame)
        large = text_boxes(upscale(frame, 4))
        assert small and large
        for box in small:
            assert tuple(4 * v for v in box) in large or any(
                all(abs(4 * a - b) <= 4 for a, b in zip(box, other)) for other in large), (box, large)
        assert abs(text_area(frame) - text_area(upscale(frame, 4))) < 0.02


def test_frames_without_text_give_zero():
    for seed in range(6):
        footage = make_footage(seed, kinds=NON_TEXT_KINDS, clip_frames=4)
        for clip in footage.clips:
            video = footage.video[:, clip.start: clip.end]
            assert clip_text_area(video) == 0.0, (seed, clip.kind)
            assert text_boxes(video[:, 0]) == [] and not text_mask(video[:, 0]).any()


def test_shapes_textures_noise_and_fades_do_not_trigger():
    generator = torch.Generator().manual_seed(0)
    grey = torch.full((3, 48, 48), -0.7)
    # Noise as in low-quality footage (sigma 0.15) and far beyond it: its marks are thin and crowded
    # like letters, but only just cross the stroke threshold.
    frames = [(grey + sigma * torch.randn(grey.shape, generator=generator)).clamp(-1, 1)
              for sigma in (0.15, 0.3, 0.4, 0.5, 0.7)]
    for seed in range(8):   # fades mix the last frame of one clip with the first of the next
        footage = make_footage(seed, kinds=("normal", "low_quality", "static", "normal"), fade_frames=4)
        for first, kind, length in footage.transitions:
            frames += [footage.video[:, t] for t in range(first, first + length)]
        frames += [upscale(footage.video[:, 5], 2), upscale(footage.video[:, 20], 4)]
    assert len(frames) > 20
    areas = [text_area(frame.clamp(-1, 1)) for frame in frames]
    assert max(areas) <= TEXT_AREA_THRESHOLD, areas


@pytest.mark.parametrize("seed", [91, 185])
def test_hardest_tuning_scenes_stay_silent(seed):
    """The tuning footage whose scenes came closest to text: a noisy low-quality clip (seed 91) and a
    sliver of one shape showing around another (seed 185) give one or two runs per row, not several."""
    footage = make_footage(seed, n_clips=6, clip_frames=16, size=32, fade_frames=4)
    for clip in footage.clips:
        if clip.kind != "text_overlay":
            assert clip_text_area(footage.video[:, clip.start: clip.end]) == 0.0, clip


def test_a_square_patch_of_fine_texture_is_not_a_line():
    """A checkerboard has text's thin high-contrast marks and many runs per row, but not a line's shape;
    the same texture laid out as a line is (by design) taken for text."""
    def checkerboard_on_grey(height, width):
        frame = torch.full((3, 32, 32), -0.7)
        rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        frame[:, 10: 10 + height, 4: 4 + width] = torch.where((rows + cols) % 2 == 0, 1.0, -0.7)
        return frame

    assert text_area(checkerboard_on_grey(10, 10)) == 0.0
    assert text_area(checkerboard_on_grey(6, 24)) > 0.1


def test_thin_outlines_are_not_lines_of_text():
    """A 1-px frame (small box) crosses a row once or twice, not several times; a long two-cell table
    has few marks per line height of width. Both are thin and high contrast like letters."""
    def outline_on_grey(height, width, dividers=()):
        lines = torch.zeros(32, 48, dtype=torch.bool)
        top, left, bottom, right = 12, 4, 12 + height - 1, 4 + width - 1
        lines[top, left: right + 1] = lines[bottom, left: right + 1] = True
        for column in (left, right, *(left + d for d in dividers)):
            lines[top: bottom + 1, column] = True
        frame = torch.full((3, 32, 48), -0.7)
        frame[:, lines] = 1.0
        return frame

    for height, width, dividers in [(6, 10, ()), (8, 12, ()), (6, 40, (20,))]:
        assert text_area(outline_on_grey(height, width, dividers)) == 0.0, (height, width, dividers)


def render_word(frame, word, position, font_size=None, fill=(255, 255, 255), bar=None):
    """Draw ``word`` with PIL's default font on a (3, H, W) [-1, 1] frame, optionally on a full-width
    bar of colour ``bar`` (3 px above and below the ink); returns (frame, ink box)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default() if font_size is None else ImageFont.load_default(size=font_size)
    pixels = ((frame.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    ink = Image.new("L", image.size)
    ImageDraw.Draw(ink).text(position, word, font=font, fill=255)
    rows, cols = np.nonzero(np.array(ink))
    box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
    draw = ImageDraw.Draw(image)
    if bar is not None:
        draw.rectangle([0, box[0] - 3, image.width - 1, box[2] + 2], fill=bar)
    draw.text(position, word, font=font, fill=fill)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1, box


def intersection_over_union(mask, box):
    truth = torch.zeros_like(mask)
    truth[box[0]: box[2], box[1]: box[3]] = True
    return float((mask & truth).sum() / (mask | truth).sum())


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_real_rendered_word_is_found(factor):
    pytest.importorskip("PIL")
    scene = make_footage(3, kinds=("normal",), clip_frames=2, size=64).video[:, 0]
    frame, box = render_word(scene, "news", (8, 40))
    frame, box = upscale(frame, factor), tuple(factor * v for v in box)
    mask = text_mask(frame)
    assert intersection_over_union(mask, box) > 0.5, (text_boxes(frame), box)
    # Nothing is found on the same scene without the word.
    assert text_area(upscale(scene, factor)) == 0.0


def test_boxes_hug_rendered_lines():
    """Sizes 10-24 px, white text plain or on a dark bar, black text on a light bar: the detected region
    overlaps the ink box well (it adds a margin of leading, so IoU < 1)."""
    pytest.importorskip("PIL")
    scene = make_footage(1, kinds=("static",), clip_frames=2, size=128).video[:, 0]
    styles = {"plain": ((255, 255, 255), None), "dark bar": ((255, 255, 255), (13, 13, 13)),
              "light bar": ((0, 0, 0), (225, 225, 225))}
    scores = []
    for font_size in (10, 16, 24):
        for style, (fill, bar) in styles.items():
            for word in ("breaking news", "jumpy"):
                frame, box = render_word(scene, word, (6, 50), font_size, fill, bar)
                scores.append(intersection_over_union(text_mask(frame), box))
                assert scores[-1] > 0.6, (font_size, style, word, scores[-1])
    assert np.mean(scores) > 0.75, scores


def test_dark_text_on_light_is_found_like_light_text_on_dark():
    """The black-hat of -Y is the top-hat of Y: negating a frame gives the same boxes."""
    pytest.importorskip("PIL")
    scene = make_footage(4, kinds=("normal",), clip_frames=2, size=128).video[:, 0]
    frame, box = render_word(scene, "weather", (30, 60), font_size=16)
    assert text_boxes(frame) == text_boxes(-frame)
    assert intersection_over_union(text_mask(-frame), box) > 0.5
    caption = make_footage(0, kinds=("text_overlay",), clip_frames=2).video[:, 0]
    assert text_boxes(caption) == text_boxes(-caption) != []


def test_clip_area_reads_first_middle_and_last_frames():
    text = make_footage(0, kinds=("text_overlay",), clip_frames=2).video[:, 0]
    plain = make_footage(0, kinds=("normal",), clip_frames=2).video[:, 0]
    for frame_with_text, expected in [(0, True), (4, True), (8, True), (3, False)]:
        clip = torch.stack([plain] * 9, dim=1)
        clip[:, frame_with_text] = text
        assert (clip_text_area(clip) == text_area(text)) == expected, frame_with_text
        assert (clip_text_area(clip) == 0.0) != expected


def test_mask_is_the_union_of_the_boxes():
    frame = make_footage(2, kinds=("text_overlay",), clip_frames=2, size=64).video[:, 0]
    boxes = text_boxes(frame)
    assert boxes == sorted(boxes)
    union = torch.zeros(64, 64, dtype=torch.bool)
    for top, left, bottom, right in boxes:
        assert 0 <= top < bottom <= 64 and 0 <= left < right <= 64
        union[top:bottom, left:right] = True
    assert torch.equal(text_mask(frame), union)
    assert text_area(frame) == pytest.approx(float(union.float().mean()))


def test_connected_components_match_opencv():
    cv2 = pytest.importorskip("cv2")
    generator = torch.Generator().manual_seed(0)
    for density in (0.3, 0.45, 0.6):
        mask = torch.rand(40, 50, generator=generator) < density
        labels = connected_components(mask)
        count, reference = cv2.connectedComponents(mask.numpy().astype(np.uint8), connectivity=8)
        assert len(labels.unique()) == count
        assert torch.equal(labels == 0, ~mask)
        # Same partition: each of our labels maps to exactly one reference label and vice versa.
        pairs = set(zip(labels[mask].tolist(), reference[mask.numpy()].tolist()))
        assert len(pairs) == count - 1


def test_held_out_precision_and_recall():
    figures = benchmark_footage_text(range(1000, 1012))
    assert figures["clips"] == 72 and figures["text_clips"] > 5
    assert figures["precision"] >= 0.95 and figures["recall"] >= 0.95, figures
    assert figures["area_mae"] < 0.04, figures
    upscaled = benchmark_footage_text(range(1000, 1003), upscale=4)
    assert upscaled["precision"] >= 0.95 and upscaled["recall"] >= 0.95, upscaled


def test_validation_messages():
    frame = torch.zeros(3, 32, 32)
    with pytest.raises(TypeError, match=r"frame must be a torch.Tensor \(3, H, W\)"):
        text_area(frame.numpy())
    with pytest.raises(ValueError, match=r"frame must be \(3, H, W\)"):
        text_boxes(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"frame must be \(3, H, W\)"):
        text_mask(torch.zeros(4, 32, 32))
    with pytest.raises(TypeError, match="floating dtype"):
        text_area(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"values must be in \[-1, 1\].*127.5"):
        text_area(torch.full((3, 32, 32), 200.0))
    with pytest.raises(ValueError, match=r"clip must be \(C, T, H, W\) with C = 3"):
        clip_text_area(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match=r"clip must be \(C, T, H, W\) with C = 3"):
        clip_text_area(torch.zeros(8, 3, 32, 32))
    with pytest.raises(ValueError, match="seeds must be a non-empty iterable of ints"):
        benchmark_footage_text([])
    with pytest.raises(ValueError, match="upscale must be a positive int"):
        benchmark_footage_text(range(1), upscale=0)
