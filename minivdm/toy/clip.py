"""The toy world's tiny CLIP and aesthetic head: the recipe that trains them, the loader, the benchmark.

SVD's CLIP filters (Blattmann et al., 2023, arXiv:2311.15127, App. C) need a CLIP model and an aesthetic
predictor; at full scale they are OpenAI's ViT-L/14 and LAION's head (``minivdm.curation.clip_scores``).
For the toy world both are trained here, on a CPU, in minutes:

1. A tiny transformers ``CLIPModel`` (vision: 32x32 input, 4x4 patches, width 64; text: the toy
   word-level tokenizer and the toy text encoder's size) is trained contrastively (Radford et al., 2021,
   arXiv:2103.00020) on key frames of toy footage and still toy images with their scene captions. For a
   batch of N pairs with unit embeddings e_i (image) and u_j (text) and a learned temperature
   tau = exp(-logit_scale), the symmetric InfoNCE loss is

       L = 1/2 [ CE(S, I) + CE(S^T, I) ],   S_ij = <e_i, u_j> / tau,

   i.e. every image must pick out its own caption among the batch's, and every caption its image.
   A linear quality probe on e adds BCE(probe(e), low_quality) during this stage only (see
   ``ContrastiveTraining``: toy captions never mention quality, so without it the embedding forgets
   blocks and noise, which a real CLIP keeps because web captions do mention them).
2. The aesthetic head (LAION's layout, narrower) regresses a toy "rating" from the frozen unit image
   embedding: 2 for key frames of ``low_quality`` footage clips (blocky and noisy), 7 for every other
   kind. This is the toy analogue of the human aesthetic ratings (1-10) LAION's head was fit to: in the
   toy world, "ugly" is defined as degraded, so the labels come for free.
3. Thresholds: clips with aesthetic < ``AESTHETIC_THRESHOLD`` or caption similarity
   < ``TEXT_SIMILARITY_THRESHOLD`` are dropped. Both are tuned on the tuning footage seeds (0..199) by
   the best F1, never on the held-out seeds (1000..1049) the benchmark reports.

A single frame shows no motion, so the similarity can only check the colours and shapes a caption
names (and the wording around them); "moving left" and "moving right" look the same to it.

Reproduce the shipped model with ``python -m minivdm train-toy-clip --out data/toy_clip`` (seeded; the
metadata of ``aesthetic_head.safetensors`` records the command, configs, thresholds and seconds taken),
and print its held-out figures with ``benchmark_footage_clip_scores()``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import CLIPConfig, CLIPModel

from minivdm.curation.clip_scores import (
    AESTHETIC_HEAD_FILE, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, AestheticHead, ClipScorer, clip_pixel_values,
    key_frames, load_clip_scorer,
)
from minivdm.toy import DATA_DIR, read_metadata
from minivdm.train import TrainConfig, describe, save_weights, train

TOY_CLIP_DIR = DATA_DIR / "toy_clip"
TOY_CLIP_IMAGE_SIZE = 32
TOY_CLIP_PROJECTION_DIM = 64
TOY_CLIP_VISION = dict(image_size=TOY_CLIP_IMAGE_SIZE, patch_size=4, hidden_size=64, intermediate_size=256,  # noqa: C408
                       num_hidden_layers=3, num_attention_heads=4, num_channels=3)
TOY_AESTHETIC_HIDDEN = (64, 32, 16, 8)
# Toy "ratings" on LAION's 1-10 scale.
TOY_AESTHETIC_LOW, TOY_AESTHETIC_HIGH = 2.0, 7.0

# Footage as the curation benchmark uses it; training seeds never meet the tuning or held-out ones.
FOOTAGE_ARGUMENTS = dict(n_clips=6, clip_frames=16, size=32, fade_frames=4)  # noqa: C408
TUNING_SEEDS = range(0, 200)
HELD_OUT_SEEDS = range(1000, 1050)
TRAINING_SEED_START = 100_000
TOY_CLIP_FOOTAGES = 1500      # training footages: 9,000 clips, 27,000 key frames
TOY_CLIP_IMAGES = 6000        # still toy images captioned without motion ("a red circle")
TOY_CLIP_BATCH_SIZE = 64
TOY_AESTHETIC_BATCH_SIZE = 256
QUALITY_WEIGHT = 1.0          # of the stage-1 quality probe's loss, see ContrastiveTraining
TOY_CLIP_TRAIN = TrainConfig(steps=2400, learning_rate=2e-3, warmup_steps=50, ema_decay=0.98, seed=0,
                             checkpoint_every=200, log_every=50, decay="cosine")
TOY_AESTHETIC_TRAIN = TrainConfig(steps=600, learning_rate=2e-3, warmup_steps=20, ema_decay=0.98, seed=0,
                                  checkpoint_every=200, log_every=50, decay="cosine")

# Tuned on TUNING_SEEDS by ``train_toy_clip`` (recorded in the shipped head's metadata; a test keeps them equal).
AESTHETIC_THRESHOLD: float = 4.751866698265076
TEXT_SIMILARITY_THRESHOLD: float = 0.49246832728385925


def toy_clip_config() -> CLIPConfig:
    """The toy CLIP: the toy text encoder's size and vocabulary, a 32x32 ViT with 4x4 patches."""
    from minivdm.text import TOY_TEXT_CONFIG

    return CLIPConfig(text_config=TOY_TEXT_CONFIG.to_dict(), vision_config=dict(TOY_CLIP_VISION),
                      projection_dim=TOY_CLIP_PROJECTION_DIM)


def build_toy_clip(seed: int = 0) -> CLIPModel:
    """A randomly initialised toy CLIPModel; the same seed gives the same weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPModel(toy_clip_config())


@dataclass
class ToyClipData:
    frames: Tensor           # (N, 3, 32, 32) in [-1, 1]
    captions: list[str]      # N scene captions
    low_quality: Tensor      # (N,) bool: the frame is from a low_quality footage clip
    from_footage: Tensor     # (N,) bool: a footage key frame (False: a still toy image)


def footage_key_frames(seeds) -> tuple[Tensor, list[str], list[str]]:
    """Key frames (3 per clip, clip-major) of the footage of ``seeds``: ((3 * clips, 3, H, W), captions, kinds)."""
    from minivdm.toyworld.footage import make_footage

    frames, captions, kinds = [], [], []
    for seed in seeds:
        footage = make_footage(int(seed), **FOOTAGE_ARGUMENTS)
        for clip in footage.clips:
            frames.append(key_frames(footage.video[:, clip.start: clip.end]))
            captions.append(clip.caption)
            kinds.append(clip.kind)
    return torch.cat(frames), captions, kinds


def toy_clip_training_data(footages: int = TOY_CLIP_FOOTAGES, images: int = TOY_CLIP_IMAGES) -> ToyClipData:
    """Key frames of training footage (every kind) and still images, each with its scene caption."""
    from minivdm.toyworld import generate_images

    frames, clip_captions, kinds = footage_key_frames(range(TRAINING_SEED_START, TRAINING_SEED_START + footages))
    captions = [caption for caption in clip_captions for _ in range(3)]
    low_quality = torch.tensor([kind == "low_quality" for kind in kinds for _ in range(3)])
    from_footage = torch.ones(len(captions), dtype=torch.bool)
    if images > 0:
        # textured backgrounds, as in footage
        stills = generate_images(images, seed=TRAINING_SEED_START, texture=True)
        frames = torch.cat([frames, stills.images])
        captions = captions + stills.captions
        low_quality = torch.cat([low_quality, torch.zeros(images, dtype=torch.bool)])
        from_footage = torch.cat([from_footage, torch.zeros(images, dtype=torch.bool)])
    return ToyClipData(frames, captions, low_quality, from_footage)


class ContrastiveTraining(torch.nn.Module):
    """Stage 1: the CLIP model and a linear quality probe on its unit image embedding (dropped after training).

    loss = InfoNCE + QUALITY_WEIGHT * BCE(probe(e), low_quality). Web alt-text often says "blurry" or
    "low quality", which is how a real CLIP's embedding comes to carry image quality; toy captions never
    do, and a CLIP trained on them alone learns to ignore the blocks and noise (a linear probe on its
    embedding then finds low-quality frames with a recall near 0.3). The probe stands in for those words.
    """

    def __init__(self, clip: CLIPModel):
        super().__init__()
        self.clip = clip
        self.quality_probe = torch.nn.Linear(clip.config.projection_dim, 1)

    def forward(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor, low_quality: Tensor) -> Tensor:
        # CLIPModel's own loss is the symmetric InfoNCE above, with S scaled by exp(logit_scale).
        output = self.clip(input_ids=input_ids, pixel_values=pixel_values, attention_mask=attention_mask, return_loss=True)
        quality_logits = self.quality_probe(output.image_embeds).squeeze(1)   # image_embeds are unit norm
        return output.loss + QUALITY_WEIGHT * F.binary_cross_entropy_with_logits(quality_logits, low_quality.float())


def _contrastive_loss(model: ContrastiveTraining, batch, generator: torch.Generator) -> Tensor:
    return model(*batch)


def best_threshold(scores: Tensor, positive: Tensor, *, positive_below: bool) -> tuple[float, float]:
    """(threshold, F1): the cut between sorted scores with the best F1 of the positive class.

    ``positive_below``: a score below the threshold predicts positive (low quality); otherwise a score
    >= threshold does (caption matches). The threshold sits midway between the two scores it separates.
    """
    scores, positive = scores.double(), positive.bool()
    order = torch.argsort(scores)
    sorted_scores, sorted_positive = scores[order], positive[order].double()
    # cut k: the k lowest scores are on one side, the rest on the other, for k = 1 .. N-1
    positives_below = torch.cumsum(sorted_positive, 0)[:-1]
    count_below = torch.arange(1, len(scores), dtype=torch.float64)
    total_positive = sorted_positive.sum()
    if positive_below:
        true_positive, predicted = positives_below, count_below
    else:
        true_positive, predicted = total_positive - positives_below, len(scores) - count_below
    f1 = 2 * true_positive / (predicted + total_positive)
    distinct = sorted_scores[1:] > sorted_scores[:-1]     # a cut between equal scores is no cut
    f1 = torch.where(distinct, f1, torch.full_like(f1, -1.0))
    k = int(torch.argmax(f1))
    return float((sorted_scores[k] + sorted_scores[k + 1]) / 2), float(f1[k])


def visible_objects(caption: str) -> list[tuple[str, str]]:
    """The sorted (colour, shape) pairs a caption names: all that a single frame can confirm."""
    from minivdm.toyworld.oracle import parse_caption

    return sorted((colour, shape) for colour, shape, _ in parse_caption(caption))


def mismatched_captions(captions: list[str], offset: int = FOOTAGE_ARGUMENTS["n_clips"]) -> list[str]:
    """For clip i, another clip's caption: the first one from clip i + offset on (cyclically) whose text
    differs from clip i's. With the default offset it is the same clip slot of the next footage."""
    mismatched = []
    for i, caption in enumerate(captions):
        for step in range(len(captions)):
            other = captions[(i + offset + step) % len(captions)]
            if other != caption:
                mismatched.append(other)
                break
        else:
            raise ValueError("every caption is the same: no mismatched caption exists")
    return mismatched


def swap_one_word(caption: str, kind: str) -> str:
    """A hard mismatch: the first colour (kind="colour") or shape (kind="shape") word of ``caption`` replaced
    by the next one, in PALETTE / SHAPES order, that the caption does not name ("a red circle" -> "a green circle")."""
    from minivdm.toyworld import PALETTE, SHAPES

    if kind not in ("colour", "shape"):
        raise ValueError(f"kind must be 'colour' or 'shape', got {kind!r}")
    choices = list(PALETTE) if kind == "colour" else list(SHAPES)
    words = caption.split()
    position = next(i for i, word in enumerate(words) if word in choices)
    start = choices.index(words[position])
    for step in range(1, len(choices)):
        candidate = choices[(start + step) % len(choices)]
        if candidate not in words:
            words[position] = candidate
            return " ".join(words)
    raise ValueError(f"{caption!r} already names every {kind}")


@torch.no_grad()
def footage_clip_scores(scorer: ClipScorer, seeds) -> dict:
    """Per clip of the footage of ``seeds``: kind, aesthetic, similarity to its own and to a mismatched caption.

    The same numbers as ``scorer.aesthetic(key_frames(clip))`` and ``scorer.text_similarity(...)``, computed
    in batches.
    """
    frames, captions, kinds = footage_key_frames(seeds)
    embeddings = scorer.image_embeddings(frames).view(len(captions), 3, -1)     # (clips, 3 key frames, D)
    others = mismatched_captions(captions)
    matched = torch.einsum("ckd,cd->ck", embeddings, scorer.text_embeddings(captions)).mean(1)
    mismatched = torch.einsum("ckd,cd->ck", embeddings, scorer.text_embeddings(others)).mean(1)
    swapped = {kind: torch.einsum("ckd,cd->ck", embeddings, scorer.text_embeddings(
        [swap_one_word(caption, kind) for caption in captions])).mean(1).cpu() for kind in ("colour", "shape")}
    aesthetic = None
    if scorer.aesthetic_head is not None:
        head = scorer.aesthetic_head
        weight = head.layers[0].weight
        aesthetic = head(embeddings.flatten(0, 1).to(weight.device, weight.dtype)).float().cpu().view(-1, 3).mean(1)
    return {"kinds": kinds, "captions": captions, "mismatched_captions": others, "aesthetic": aesthetic,
            "matched_similarity": matched.cpu(), "mismatched_similarity": mismatched.cpu(),
            "colour_swapped_similarity": swapped["colour"], "shape_swapped_similarity": swapped["shape"]}


def tune_thresholds(scorer: ClipScorer, seeds=TUNING_SEEDS) -> dict[str, float]:
    """Thresholds with the best F1 on the footage of ``seeds`` (the tuning seeds, never the held-out ones)."""
    scores = footage_clip_scores(scorer, seeds)
    low_quality = torch.tensor([kind == "low_quality" for kind in scores["kinds"]])
    aesthetic_threshold, aesthetic_f1 = best_threshold(scores["aesthetic"], low_quality, positive_below=True)
    similarities = torch.cat([scores["matched_similarity"], scores["mismatched_similarity"]])
    matches = torch.cat([torch.ones(len(low_quality), dtype=torch.bool), torch.zeros(len(low_quality), dtype=torch.bool)])
    similarity_threshold, similarity_f1 = best_threshold(similarities, matches, positive_below=False)
    return {"aesthetic_threshold": aesthetic_threshold, "aesthetic_f1": aesthetic_f1,
            "text_similarity_threshold": similarity_threshold, "text_similarity_f1": similarity_f1}


def _precision_recall(predicted: Tensor, actual: Tensor) -> tuple[float, float]:
    true_positive = (predicted & actual).sum().item()
    precision = true_positive / max(1, predicted.sum().item())
    recall = true_positive / max(1, actual.sum().item())
    return precision, recall


def _write_preprocessor_config(folder: Path) -> None:
    """The CLIPImageProcessor keys ``load_clip_scorer`` reads: 32x32 frames, OpenAI's mean and std."""
    config = {
        "image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": TOY_CLIP_IMAGE_SIZE},
        "resample": 3, "do_center_crop": True, "crop_size": {"height": TOY_CLIP_IMAGE_SIZE, "width": TOY_CLIP_IMAGE_SIZE},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
        "image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD),
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")


def train_toy_clip(out: str | Path = TOY_CLIP_DIR, *, steps: int | None = None, head_steps: int | None = None,
                   checkpoint_dir: str | Path | None = None, command: str = "", footages: int = TOY_CLIP_FOOTAGES,
                   images: int = TOY_CLIP_IMAGES, tuning_seeds=TUNING_SEEDS) -> Path:
    """Train the toy CLIP, then its aesthetic head, tune both thresholds, and write a CLIP folder.

    ``out`` gets ``config.json`` + ``model.safetensors`` (the CLIPModel, EMA weights), the tokenizer,
    ``preprocessor_config.json`` and ``aesthetic_head.safetensors``, whose metadata records ``command``,
    both training configs, the thresholds and the seconds each stage took. ``checkpoint_dir`` makes
    both stages resumable (``clip/`` and ``aesthetic/`` inside it). ``steps`` / ``head_steps`` override
    the recipes' step counts; ``footages`` / ``images`` the dataset sizes (for quick tests).
    """
    import dataclasses

    from minivdm.text import build_toy_tokenizer, encode_captions

    started, cpu_started = time.perf_counter(), time.process_time()
    clip_config = TOY_CLIP_TRAIN if steps is None else dataclasses.replace(TOY_CLIP_TRAIN, steps=steps)
    head_config = TOY_AESTHETIC_TRAIN if head_steps is None else dataclasses.replace(TOY_AESTHETIC_TRAIN, steps=head_steps)
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)

    data = toy_clip_training_data(footages, images)
    tokenizer = build_toy_tokenizer()
    pixel_values = clip_pixel_values(data.frames, TOY_CLIP_IMAGE_SIZE)
    input_ids, attention_mask = encode_captions(tokenizer, data.captions)
    data_seconds = time.perf_counter() - started

    def next_pairs(step: int, generator: torch.Generator):
        index = torch.randint(len(pixel_values), (TOY_CLIP_BATCH_SIZE,), generator=generator)
        return pixel_values[index], input_ids[index], attention_mask[index], data.low_quality[index]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(clip_config.seed)
        stage_1 = ContrastiveTraining(build_toy_clip(clip_config.seed))
    data_sizes = {"footages": footages, "images": images}
    clip_result = train(stage_1, next_pairs, _contrastive_loss, clip_config,
                        None if checkpoint_dir is None else checkpoint_dir / "clip",
                        run_description={"recipe": "toy-clip", **data_sizes})
    model = clip_result.ema_model.clip.eval()

    # The head sees frozen unit embeddings of footage key frames (the kinds it has to tell apart),
    # computed exactly as they are when scoring.
    embeddings = ClipScorer(model, tokenizer).image_embeddings(data.frames[data.from_footage])
    targets = torch.where(data.low_quality[data.from_footage], TOY_AESTHETIC_LOW, TOY_AESTHETIC_HIGH)

    def next_ratings(step: int, generator: torch.Generator):
        index = torch.randint(len(embeddings), (TOY_AESTHETIC_BATCH_SIZE,), generator=generator)
        return embeddings[index], targets[index]

    def rating_loss(head: AestheticHead, batch, generator: torch.Generator) -> Tensor:
        embedding, target = batch
        return F.mse_loss(head(embedding), target)   # LAION's head is fit by MSE to mean ratings too

    with torch.random.fork_rng(devices=[]):   # a seeded initialisation that leaves the caller's RNG alone
        torch.manual_seed(head_config.seed)
        head = AestheticHead(TOY_CLIP_PROJECTION_DIM, TOY_AESTHETIC_HIDDEN)
    head_result = train(head, next_ratings, rating_loss, head_config,
                        None if checkpoint_dir is None else checkpoint_dir / "aesthetic",
                        run_description={"recipe": "toy-aesthetic-head", **data_sizes})
    head = head_result.ema_model.eval()

    scorer = ClipScorer(model, tokenizer, head)
    tuned = tune_thresholds(scorer, tuning_seeds)

    out = Path(out)
    if not (clip_result.is_main_process and head_result.is_main_process):
        return out
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _write_preprocessor_config(out)
    metadata = {
        "command": command, "clip_train_config": describe(clip_config), "aesthetic_train_config": describe(head_config),
        "aesthetic_hidden": json.dumps(list(head.hidden)), "aesthetic_dropout": json.dumps(list(head.dropout)),
        "aesthetic_targets": json.dumps({"low_quality": TOY_AESTHETIC_LOW, "other kinds": TOY_AESTHETIC_HIGH}),
        "clip_batch_size": str(TOY_CLIP_BATCH_SIZE), "footages": str(footages), "images": str(images),
        "training_seeds": f"{TRAINING_SEED_START}..{TRAINING_SEED_START + footages - 1}",
        "tuning_seeds": f"{min(tuning_seeds)}..{max(tuning_seeds)}", "thresholds": json.dumps(tuned),
        "data_seconds": f"{data_seconds:.0f}", "clip_train_seconds": f"{clip_result.seconds:.0f}",
        "aesthetic_train_seconds": f"{head_result.seconds:.0f}",
        "total_seconds": f"{time.perf_counter() - started:.0f}",
        # CPU time of this process (all its threads): what the recipe costs on a machine shared with other jobs
        "total_cpu_seconds": f"{time.process_time() - cpu_started:.0f}",
        "clip_final_loss": f"{clip_result.losses[-1]:.4f}" if clip_result.losses else "",
        "aesthetic_final_loss": f"{head_result.losses[-1]:.4f}" if head_result.losses else "",
        "torch": torch.__version__,
    }
    save_weights(head, out / AESTHETIC_HEAD_FILE, metadata)
    return out


def toy_clip_metadata(folder: str | Path = TOY_CLIP_DIR) -> dict[str, str]:
    """The recorded recipe of a toy CLIP folder: command, configs, thresholds, seconds."""
    return read_metadata(Path(folder) / AESTHETIC_HEAD_FILE)


def load_toy_clip_scorer(folder: str | Path = TOY_CLIP_DIR) -> ClipScorer:
    """The shipped toy CLIP with its aesthetic head (or one you trained to ``folder``)."""
    folder = Path(folder)
    if not (folder / AESTHETIC_HEAD_FILE).is_file():
        raise FileNotFoundError(f"no toy CLIP at {folder}; train one with "
                                f"`python -m minivdm train-toy-clip --out {folder}`")
    return load_clip_scorer(folder, folder / AESTHETIC_HEAD_FILE)


def benchmark_footage_clip_scores(seeds=HELD_OUT_SEEDS, *, scorer: ClipScorer | None = None,
                                  aesthetic_threshold: float = AESTHETIC_THRESHOLD,
                                  text_similarity_threshold: float = TEXT_SIMILARITY_THRESHOLD) -> dict:
    """Precision / recall of both CLIP filters on the footage of ``seeds`` (default: the held-out seeds).

    low quality:      predicted when aesthetic < threshold; actual when kind == "low_quality"
    caption matches:  every clip against its own caption (actual match) and another clip's (actual
                      mismatch, see ``mismatched_captions``); predicted when similarity >= threshold
    also: how often a caption with one colour or one shape word changed (``swap_one_word``) is rejected,
    and how often it scores below the true caption; per-kind breakdowns.
    """
    scorer = load_toy_clip_scorer() if scorer is None else scorer
    scores = footage_clip_scores(scorer, seeds)
    kinds = scores["kinds"]
    low_quality = torch.tensor([kind == "low_quality" for kind in kinds])
    low_precision, low_recall = _precision_recall(scores["aesthetic"] < aesthetic_threshold, low_quality)
    matched_ok = scores["matched_similarity"] >= text_similarity_threshold
    mismatched_accepted = scores["mismatched_similarity"] >= text_similarity_threshold
    predicted = torch.cat([matched_ok, mismatched_accepted])
    actual = torch.cat([torch.ones(len(kinds), dtype=torch.bool), torch.zeros(len(kinds), dtype=torch.bool)])
    match_precision, match_recall = _precision_recall(predicted, actual)
    # mismatched captions naming the same colours and shapes as the true one (only the motion differs):
    # a single key frame cannot tell them apart, so they bound the precision any frame-level CLIP reaches
    motion_only = torch.tensor([visible_objects(caption) == visible_objects(other)
                                for caption, other in zip(scores["captions"], scores["mismatched_captions"])])
    by_kind = {}
    for kind in sorted(set(kinds)):
        mask = torch.tensor([k == kind for k in kinds])
        by_kind[kind] = {"clips": int(mask.sum()), "mean_aesthetic": scores["aesthetic"][mask].mean().item(),
                         "matched_recall": matched_ok[mask].float().mean().item(),
                         "mismatched_accepted": mismatched_accepted[mask].float().mean().item()}
    return {
        "clips": len(kinds), "seeds": f"{min(seeds)}..{max(seeds)}",
        "aesthetic_threshold": aesthetic_threshold, "text_similarity_threshold": text_similarity_threshold,
        "low_quality_precision": low_precision, "low_quality_recall": low_recall,
        "caption_match_precision": match_precision, "caption_match_recall": match_recall,
        "motion_only_mismatches": int(motion_only.sum()),
        "motion_only_mismatches_accepted": int((motion_only & mismatched_accepted).sum()),
        # harder mismatches than another clip's caption: one colour or one shape word changed
        "colour_swap_rejected": (scores["colour_swapped_similarity"] < text_similarity_threshold).float().mean().item(),
        "shape_swap_rejected": (scores["shape_swapped_similarity"] < text_similarity_threshold).float().mean().item(),
        "colour_swap_ranked_below_true": (scores["colour_swapped_similarity"] < scores["matched_similarity"]).float().mean().item(),
        "shape_swap_ranked_below_true": (scores["shape_swapped_similarity"] < scores["matched_similarity"]).float().mean().item(),
        "mean_matched_similarity": scores["matched_similarity"].mean().item(),
        "mean_mismatched_similarity": scores["mismatched_similarity"].mean().item(),
        "by_kind": by_kind,
    }
