"""Oracle figures of the shipped toy models over held-out prompts (the numbers the issues' targets are about).

    OMP_NUM_THREADS=1 .venv/bin/python bench/toy_model_oracle.py denoisers [--samples 200]
    OMP_NUM_THREADS=1 .venv/bin/python bench/toy_model_oracle.py text-to-image [--folder data/toy_text_to_image]
    OMP_NUM_THREADS=1 .venv/bin/python bench/toy_model_oracle.py vdm [--folder data/toy_vdm] [--prompts 100]
    .venv/bin/python bench/toy_model_oracle.py controlnet [--folder data/toy_controlnet] [--prompts 200] [--out x.json]
    OMP_NUM_THREADS=1 .venv/bin/python bench/toy_model_oracle.py tune-a-video [--folder data/toy_tune_a_video]

denoisers: the chapter-1 eps and v models from the same ``--samples`` noises (seed 2), 50 DDIM steps from t = 1,
colour fidelity (palette distance, object colour error, readable fraction) and the mean RGB shift against toy-world frames.
text-to-image: 500 prompts (generate_images 100 x seed 2024, 200 x seed 7, 200 x seed 99), guidance 3, 30 DDIM steps,
about 1 s per prompt on one thread. vdm: ``--prompts`` captions of generate(seed=2024, frames=8), guidance 3, 20 steps.
controlnet: ``--prompts`` held-out images of generate_images(seed=2024), their edge maps as the control and their
captions as prompts, guidance 3, 30 steps: mean object IoU against the control's masks, share >= 0.9, colour.
tune-a-video: the shipped tuned example against the untuned inflated model on its source clip: the source's own
caption (reconstruction: mean absolute pixel error) and its three edits (colour, shape, both), from the DDIM
inversion, guidance 3, 30 steps (the benchmark over 20 sources is bench/toy_tune_a_video.py).
"""

from __future__ import annotations

import argparse
import time

import torch

TEXT_TO_IMAGE_SETS = ((100, 2024), (200, 7), (200, 99))
KEYS = ("caption_accuracy", "colour_accuracy", "shape_accuracy", "motion_accuracy", "temporal_consistency")


def denoisers(samples: int) -> None:
    from minivdm.diffusion import sample
    from minivdm.toy.denoisers import CHAPTER1_SCHEDULE, load_image_denoiser
    from minivdm.toyworld import generate_images
    from minivdm.toyworld.oracle import colour_fidelity

    data = generate_images(512, seed=123).images
    z_1 = torch.randn(samples, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    times = torch.linspace(1.0, 0.0, 51, dtype=torch.float64)
    for kind in ("eps", "v"):
        start = time.perf_counter()
        x_0 = sample(load_image_denoiser(kind), z_1, CHAPTER1_SCHEDULE, times, prediction_type=kind,
                     progress=False).clamp(-1, 1)
        report = colour_fidelity(x_0[:, :, None])
        report["mean_rgb_shift"] = (x_0.mean((0, 2, 3)) - data.mean((0, 2, 3))).norm().item()
        shown = {key: round(float(value), 3) for key, value in report.items()}
        print(f"{kind}: {samples} samples from t=1, 50 DDIM steps: {shown} ({time.perf_counter() - start:.0f} s)",
              flush=True)


def text_to_image(folder: str | None) -> None:
    from minivdm.toy.text_to_image import TEXT_TO_IMAGE_DIR, evaluate_text_to_image, load_text_to_image
    from minivdm.toyworld import generate_images

    model, tokenizer = load_text_to_image(folder or TEXT_TO_IMAGE_DIR)
    pooled, total = {}, 0
    for count, seed in TEXT_TO_IMAGE_SETS:
        start = time.perf_counter()
        prompts = generate_images(count, seed=seed).captions
        scores = evaluate_text_to_image(model, tokenizer, prompts, guidance_scale=3.0, num_steps=30)
        # motion scores are NaN for images: left out
        shown = {key: round(float(scores[key]), 3) for key in KEYS if key in scores and scores[key] == scores[key]}
        print(f"{count} prompts, generate_images(seed={seed}): {shown} ({time.perf_counter() - start:.0f} s)", flush=True)
        for key, value in shown.items():
            pooled[key] = pooled.get(key, 0.0) + count * float(scores[key])
        total += count
    print(f"pooled over {total} prompts: {({key: round(value / total, 3) for key, value in pooled.items()})}")


def vdm(folder: str | None, prompts: int) -> None:
    from minivdm.toy.vdm import TOY_VDM_DIR, TOY_VDM_FRAMES, evaluate_toy_vdm, load_toy_vdm
    from minivdm.toyworld import generate
    from minivdm.toyworld.world import ToyWorldConfig

    model, tokenizer = load_toy_vdm(folder or TOY_VDM_DIR)
    captions = generate(prompts, seed=2024, config=ToyWorldConfig(frames=TOY_VDM_FRAMES)).captions
    start = time.perf_counter()
    scores = evaluate_toy_vdm(model, tokenizer, captions, guidance_scale=3.0, num_steps=20)
    print(f"{prompts} prompts: {({key: round(float(value), 3) for key, value in scores.items()})} "
          f"({time.perf_counter() - start:.0f} s)")


def controlnet(folder: str | None, prompts: int, out: str | None = None) -> None:
    from minivdm.toy.controlnet import TOY_CONTROLNET_DIR, evaluate_toy_controlnet, load_toy_controlnet
    from minivdm.toyworld import generate_images

    model, tokenizer = load_toy_controlnet(folder or TOY_CONTROLNET_DIR)
    start = time.perf_counter()
    scores = evaluate_toy_controlnet(model, tokenizer, generate_images(prompts, seed=2024), guidance_scale=3.0,
                                     num_steps=30)
    seconds = time.perf_counter() - start
    print(f"{prompts} held-out (edge map, caption) pairs: {({key: round(float(v), 3) for key, v in scores.items()})} "
          f"({seconds:.0f} s)")
    if out:
        import json

        record = {"pairs": prompts, "held_out": "generate_images(pairs, seed=2024)", "guidance_scale": 3.0,
                  "num_steps": 30, "seconds": round(seconds), "threads": torch.get_num_threads(), **scores}
        with open(out, "w") as file:
            json.dump(record, file, indent=1)
        print(f"wrote {out}")


def tune_a_video(folder: str | None) -> None:
    from minivdm.toy.tune_a_video import (caption, edit_captions, edit_toy, held_out_sources, load_toy_tune_a_video,
                                          score_edits, tune_toy)

    tuned, model, tokenizer, source, source_caption = load_toy_tune_a_video(folder)
    obj = held_out_sources(1).objects[0][0]
    edits = edit_captions(obj, seed=0)
    captions = [source_caption] + [caption(*edit) for edit in edits]
    for name, unet in (("tuned (shipped)", tuned), ("untuned (inflated image model)",
                                                    tune_toy(model, tokenizer, source, source_caption, steps=0))):
        videos = edit_toy(unet, model, tokenizer, source, captions, seed=0)
        rows = score_edits(videos[1:], source, edits)
        print(f"{name}: reconstruction pixel error {(videos[:1] - source).abs().mean():.3f}; edits {captions[1:]}: "
              f"followed {rows['edit_followed']}, direction kept {rows['direction']}, path error (px) "
              f"{[round(p, 1) for p in rows['path_error']]}, consistent {rows['consistent']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["denoisers", "text-to-image", "vdm", "controlnet", "tune-a-video"])
    parser.add_argument("--folder", default=None, help="model folder (default: the shipped one in data/)")
    parser.add_argument("--prompts", type=int, default=100, help="vdm, controlnet: number of held-out prompts")
    parser.add_argument("--samples", type=int, default=200, help="denoisers: number of samples per model")
    parser.add_argument("--out", default=None, help="controlnet: write the figures here as JSON")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")
    if args.model == "denoisers":
        denoisers(args.samples)
    elif args.model == "text-to-image":
        text_to_image(args.folder)
    elif args.model == "controlnet":
        controlnet(args.folder, args.prompts, args.out)
    elif args.model == "tune-a-video":
        tune_a_video(args.folder)
    else:
        vdm(args.folder, args.prompts)


if __name__ == "__main__":
    main()
