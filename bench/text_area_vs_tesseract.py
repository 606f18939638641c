"""Our classical text-area estimator (minivdm.curation.text_area) against Tesseract OCR.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python bench/text_area_vs_tesseract.py [--frames 200] [--seed 0]

Needs `pip install pytesseract` and the tesseract binary (/usr/bin/tesseract); run with one thread.

Tesseract cannot read the toy footage's random blocky glyphs as letters, so the main comparison uses a
second set: real English words rendered with PIL's default font (several sizes, positions and colours;
plain, on a dark bar, or black on a light bar) onto 128x128 toy-world frames (normal, static and
low-quality scenes), a quarter of them left without text. The ground truth is where text was drawn
(union of the ink boxes of the lines). For every frame both detectors give boxes; we report

    * "has text" (any box) for each detector against the truth and against each other: accuracy, F1,
      Cohen's kappa; for ours also "area > TEXT_AREA_THRESHOLD", the clip filter's decision;
    * the covered area (union of boxes / frame): Pearson correlation between detectors and with the
      truth, mean absolute error, and the mean IoU of the covered region with the truth on text frames;
    * seconds per frame.

Tesseract runs as given (128 px frames) and on the frames enlarged 2x (bicubic; it prefers ~20-30 px
letters); its word boxes count when conf >= --min-conf and the word has a letter or digit. Its settings
(page segmentation mode 3, the default; x2; conf >= 60) are the best of psm 3 / 6 / 11, x1 / x2 / x4 and
conf 0 / 30 / 60 / 80 on the first 40 frames of this same set, so the comparison favours Tesseract.
Last, Tesseract is run on the toy "text_overlay" frames themselves (32 px and enlarged) to show what it
makes of the blocky glyphs.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_THREAD_LIMIT", "1")      # tesseract's own OpenMP threads: keep to one core

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from minivdm.curation.text_area import TEXT_AREA_THRESHOLD, text_area, text_boxes
from minivdm.toyworld.footage import TEXT_BAR_VALUE, TEXT_VALUE, make_footage

WORDS = ("the news live sport music world today breaking weather report city night market open final score "
         "goal season episode series watch more channel subscribe video model quick brown fox jumps over lazy "
         "dog summer winter travel food family friends house garden river mountain island coffee morning "
         "evening storm rain snow sunny football match highlights interview special edition update").split()
FONT_SIZES = (8, 10, 12, 14, 16, 20, 24)
TEXT_COLOURS = ((255, 255, 255), (255, 230, 0), (0, 255, 255), (210, 210, 210))
SIZE = 128


def to_image(frame: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB PIL image."""
    return Image.fromarray(((frame.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))


def to_frame(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1


def luma(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3] @ np.array([0.299, 0.587, 0.114]) / 255


def draw_line(image: Image.Image, rng: np.random.Generator, occupied: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Draw one readable line of words away from ``occupied``; returns its (H, W) bool ink box and font
    size, or None when no place was found."""
    for _ in range(20):
        font_size = int(rng.choice(FONT_SIZES))
        font = ImageFont.load_default(size=font_size)
        words = " ".join(rng.choice(WORDS, int(rng.integers(1, 4))))
        while font.getlength(words) > SIZE - 8 and " " in words:
            words = words.rsplit(" ", 1)[0]
        left, top, right, bottom = font.getbbox(words)
        if right > SIZE - 2:
            continue
        x, y = int(rng.integers(0, SIZE - right)), int(rng.integers(-top, SIZE - bottom))
        ink_image = Image.new("L", image.size)
        ImageDraw.Draw(ink_image).text((x, y), words, font=font, fill=255)
        ink = np.array(ink_image) > 0
        rows, cols = np.nonzero(ink)
        box = np.zeros_like(ink)
        box[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1] = True
        style = rng.choice(["plain", "dark bar", "light bar"])
        region = box.copy()
        if style != "plain":
            region[rows.min() - 3: rows.max() + 4] = True
        if (region & occupied).any():
            continue
        candidate = image.copy()
        draw = ImageDraw.Draw(candidate)
        if style == "dark bar":
            draw.rectangle([0, rows.min() - 3, SIZE - 1, rows.max() + 3], fill=(13, 13, 13))
            colour = (255, 255, 255)
        elif style == "light bar":
            draw.rectangle([0, rows.min() - 3, SIZE - 1, rows.max() + 3], fill=(225, 225, 225))
            colour = (0, 0, 0)
        else:
            colour = TEXT_COLOURS[int(rng.integers(len(TEXT_COLOURS)))]
        draw.text((x, y), words, font=font, fill=colour)
        # Readable: most ink pixels must differ clearly from what was under them (no yellow on yellow).
        change = np.abs(luma(np.array(candidate).astype(float)) - luma(np.array(image).astype(float)))
        if style == "plain" and (change[ink] > 0.15).mean() < 0.8:
            continue
        image.paste(candidate)
        return box, font_size
    return None


def rendered_text_set(n_frames: int, seed: int) -> list[dict]:
    """Toy-world frames at 128 px, three quarters with 1-2 lines of rendered English words."""
    rng = np.random.default_rng(seed)
    kinds = ("normal", "static", "low_quality")
    samples = []
    for index in range(n_frames):
        kind = kinds[index % 3]
        scene = make_footage(10_000 * (seed + 1) + index, kinds=(kind,), clip_frames=2, size=SIZE).video[:, 0]
        image = to_image(scene)
        truth = np.zeros((SIZE, SIZE), dtype=bool)
        font_sizes = []
        if index % 4 != 3:
            for _ in range(1 + int(rng.random() < 0.3)):
                line = draw_line(image, rng, truth)
                if line is not None:
                    truth |= line[0]
                    font_sizes.append(line[1])
        samples.append({"frame": to_frame(image), "truth": torch.from_numpy(truth), "kind": kind,
                        "font_size": max(font_sizes, default=None)})
    return samples


PAGE_SEGMENTATION_MODE = 3


Box = tuple[int, int, int, int]     # (top, left, bottom, right), bottom / right exclusive


def tesseract_words(frame: torch.Tensor, enlarge: int, min_conf: float) -> list[tuple[Box, str, float]]:
    """Tesseract's word boxes (top, left, bottom, right) in frame pixels, with text and confidence."""
    import pytesseract

    image = to_image(frame)
    if enlarge > 1:
        image = image.resize((image.width * enlarge, image.height * enlarge), Image.BICUBIC)
    data = pytesseract.image_to_data(image, config=f"--psm {PAGE_SEGMENTATION_MODE}",
                                     output_type=pytesseract.Output.DICT)
    words = []
    for text, conf, left, top, width, height in zip(data["text"], data["conf"], data["left"], data["top"],
                                                    data["width"], data["height"]):
        if float(conf) >= min_conf and any(character.isalnum() for character in text):
            box = (top // enlarge, left // enlarge, -(-(top + height) // enlarge), -(-(left + width) // enlarge))
            words.append((box, text, float(conf)))
    return words


def boxes_to_mask(boxes, shape) -> torch.Tensor:
    mask = torch.zeros(shape, dtype=torch.bool)
    for top, left, bottom, right in boxes:
        mask[top:bottom, left:right] = True
    return mask


def agreement(predicted: np.ndarray, reference: np.ndarray) -> dict:
    """Accuracy, F1 (predicted vs reference positives) and Cohen's kappa of two boolean vectors."""
    predicted, reference = predicted.astype(bool), reference.astype(bool)
    accuracy = float((predicted == reference).mean())
    true_positive = float((predicted & reference).sum())
    f1 = 2 * true_positive / max(predicted.sum() + reference.sum(), 1)
    chance = float(predicted.mean() * reference.mean() + (1 - predicted.mean()) * (1 - reference.mean()))
    kappa = (accuracy - chance) / (1 - chance) if chance < 1 else 1.0
    return {"accuracy": accuracy, "f1": f1, "kappa": kappa}


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def mean_iou(masks: list[torch.Tensor], truths: list[torch.Tensor]) -> float:
    scores = [float((mask & truth).sum() / (mask | truth).sum()) for mask, truth in zip(masks, truths) if truth.any()]
    return float(np.mean(scores))


def compare_on_rendered_words(n_frames: int, seed: int, min_conf: float) -> None:
    samples = rendered_text_set(n_frames, seed)
    truth_has = np.array([bool(s["truth"].any()) for s in samples])
    truth_area = np.array([float(s["truth"].float().mean()) for s in samples])
    truths = [s["truth"] for s in samples]
    print(f"\n== {len(samples)} toy frames at {SIZE}px with rendered English words: {truth_has.sum()} with text, "
          f"{(~truth_has).sum()} without ==")

    detectors = {}
    start = time.perf_counter()
    masks = [boxes_to_mask(text_boxes(s["frame"]), (SIZE, SIZE)) for s in samples]
    detectors["ours"] = (masks, (time.perf_counter() - start) / len(samples))
    for enlarge in (1, 2):
        start = time.perf_counter()
        masks = [boxes_to_mask([box for box, _, _ in tesseract_words(s["frame"], enlarge, min_conf)], (SIZE, SIZE))
                 for s in samples]
        detectors[f"tesseract x{enlarge}"] = (masks, (time.perf_counter() - start) / len(samples))

    has = {name: np.array([bool(m.any()) for m in masks]) for name, (masks, _) in detectors.items()}
    area = {name: np.array([float(m.float().mean()) for m in masks]) for name, (masks, _) in detectors.items()}
    ours_filter = np.array([text_area(s["frame"]) > TEXT_AREA_THRESHOLD for s in samples])
    big_text = truth_area > TEXT_AREA_THRESHOLD

    print(f"{'detector':<16}{'acc':>7}{'F1':>7}{'kappa':>7}{'area r':>8}{'area MAE':>10}{'IoU':>7}{'s/frame':>9}"
          "   (each against the ground truth)")
    for name, (masks, seconds) in detectors.items():
        score = agreement(has[name], truth_has)
        print(f"{name:<16}{score['accuracy']:>7.3f}{score['f1']:>7.3f}{score['kappa']:>7.3f}"
              f"{correlation(area[name], truth_area):>8.3f}{np.abs(area[name] - truth_area).mean():>10.4f}"
              f"{mean_iou(masks, truths):>7.3f}{seconds:>9.3f}")
    score = agreement(ours_filter, big_text)
    print(f"{'ours, filter':<16}{score['accuracy']:>7.3f}{score['f1']:>7.3f}{score['kappa']:>7.3f}"
          f"   (area > {TEXT_AREA_THRESHOLD} vs true area > {TEXT_AREA_THRESHOLD}: {big_text.sum()} frames)")

    print("\nours vs tesseract (agreement on 'has text', correlation of covered area):")
    for name in ("tesseract x1", "tesseract x2"):
        score = agreement(has["ours"], has[name])
        print(f"  ours vs {name:<14} acc {score['accuracy']:.3f}  F1 {score['f1']:.3f}  kappa {score['kappa']:.3f}"
              f"  area r {correlation(area['ours'], area[name]):.3f}")

    print("\nrecall on text frames by (largest) font size, ours / tesseract x1 / tesseract x2; false alarms:")
    font_sizes = np.array([s["font_size"] or 0 for s in samples])
    for size in FONT_SIZES:
        chosen = font_sizes == size
        if chosen.any():
            print(f"  font size {size:>2}: {chosen.sum():>3} frames  "
                  + "  ".join(f"{has[name][chosen].mean():.2f}" for name in detectors))
    print(f"  no text     : {(~truth_has).sum():>3} frames  "
          + "  ".join(f"{has[name][~truth_has].mean():.2f}" for name in detectors))


def tesseract_on_toy_glyphs(n_clips: int, min_conf: float) -> None:
    print(f"\n== tesseract on the toy footage's own text_overlay frames ({n_clips} clips, first frame) ==")
    print(f"{'input':<22}{'frames with a word':>20}{'IoU with bar':>14}{'ours: IoU':>11}   words read")
    for enlarge in (1, 4, 8):
        found, ious, our_ious, read = 0, [], [], []
        for seed in range(n_clips):
            footage = make_footage(2000 + seed, kinds=("text_overlay",), clip_frames=2, size=32)
            frame = footage.video[:, 0]
            bar = ((footage.video == TEXT_BAR_VALUE) | (footage.video == TEXT_VALUE)).all(dim=0).all(dim=0)
            words = tesseract_words(frame, enlarge, min_conf)
            mask = boxes_to_mask([box for box, _, _ in words], bar.shape)
            found += bool(words)
            ious.append(float((mask & bar).sum() / (mask | bar).sum()))
            ours = boxes_to_mask(text_boxes(frame), bar.shape)
            our_ious.append(float((ours & bar).sum() / (ours | bar).sum()))
            read += [text for _, text, _ in words]
        print(f"{f'32px, enlarged x{enlarge}':<22}{f'{found}/{n_clips}':>20}{np.mean(ious):>14.3f}"
              f"{np.mean(our_ious):>11.3f}   {read[:8]}")
    all_words = []
    for seed in range(n_clips):
        frame = make_footage(2000 + seed, kinds=("text_overlay",), clip_frames=2, size=32).video[:, 0]
        all_words += tesseract_words(frame, 8, 0.0)
    print(f"  with conf >= 0 at x8: {len(all_words)} words, e.g. "
          f"{[(text, round(conf)) for _, text, conf in all_words[:8]]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-conf", type=float, default=60.0)
    parser.add_argument("--toy-clips", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    compare_on_rendered_words(args.frames, args.seed, args.min_conf)
    tesseract_on_toy_glyphs(args.toy_clips, args.min_conf)


if __name__ == "__main__":
    main()
