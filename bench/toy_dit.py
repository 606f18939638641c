"""The toy DiT (chapter 11) measured by the oracle: ONE model sampled at every trained size, and the motion-word
benchmark of chapter 3 run on it and on the toy VDM.

    .venv/bin/python bench/toy_dit.py [--model data/toy_dit] [--checkpoint EMA.pt --label "step 6000"] \
        [--runs sizes,motion-word,vdm-motion-word] [--prompts 100] [--num-steps 20] [--draws 20] [--out FILE.json]
    .venv/bin/python bench/toy_dit.py --merge part1.json part2.json ... --out bench/results/toy_dit.json

* sizes: one sample per held-out prompt (captions of ``minivdm.toy.dit.held_out_prompts``: 1-2 objects, colour, shape
  and motion of each) at each (T, H, W) of ``TOY_DIT_SIZES``; guidance 3, DDIM; caption accuracy = every object's
  colour, shape and motion right (95% Wilson interval), and the oracle's colour, shape, motion and consistency.
* motion-word: tutorial 3's figure 5 with more draws: "a red circle <motion>" for the five motions from the same
  ``--draws`` noise draws (DDIM 30 steps, guidance 3, 8 frames at 32x32); motion accuracy (chance 0.2) and the number
  of draws that move one way for all four moving prompts (there the noise, not the word, decides).
* denoising: the training loss (v-prediction MSE) on 64 held-out captioned clips of 8 frames at 32x32, at fixed noise
  levels t, the same noise for every model: how good a denoiser the network is, before any sampling.
* vdm-sizes, vdm-motion-word, vdm-denoising: the same for the shipped toy VDM (data/toy_vdm, chapter 3's U-Net: 8
  frames at 32x32 only), so both architectures are read by one benchmark on the same held-out prompts.

``--checkpoint`` scores the EMA weights of a training checkpoint (or a snapshot holding ``ema_model``) instead of the
folder's; ``--label`` names its rows (e.g. the step). ``--runs`` splits the work over processes; ``--merge`` joins.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from minivdm.io.atomic_files import write_text_atomically
from minivdm.toy.text_to_image import wilson_interval

RUN_GROUPS = ("sizes", "motion-word", "denoising", "vdm-sizes", "vdm-motion-word", "vdm-denoising")
DENOISING_TIMES = (0.05, 0.2, 0.4, 0.6, 0.8, 0.95)


def size_name(size) -> str:
    frames, height, width = size
    return f"{frames} frames, {height}x{width}"


def load_model(args):
    from minivdm.toy.dit import load_toy_dit

    model, tokenizer = load_toy_dit(args.model)
    steps = args.total_steps
    if args.checkpoint:
        state = torch.load(args.checkpoint, weights_only=True, map_location="cpu")
        model.load_state_dict(state["ema_model"])
        print(f"EMA weights of step {state['step']} from {args.checkpoint}")
        steps = state["step"] if steps is None else steps
    return model, tokenizer, steps


def size_rows(model, tokenizer, args, label: str, sizes=None, evaluate=None) -> list[dict]:
    from minivdm.toy.dit import TOY_DIT_SIZES, evaluate_toy_dit, held_out_prompts

    prompts = held_out_prompts(args.prompts)
    rows = []
    for size in sizes or TOY_DIT_SIZES:
        start = time.time()
        scores = (evaluate or evaluate_toy_dit)(model, tokenizer, prompts, size=size, guidance_scale=args.guidance,
                                                num_steps=args.num_steps, seed=0)
        hits = round(scores["caption_accuracy"] * len(prompts))
        rows.append({"model": label, "size": list(size), "prompts": len(prompts), **scores,
                     "caption_interval": list(wilson_interval(hits, len(prompts))), "seconds": time.time() - start})
        print(f"{label:28s} {size_name(size):22s} caption {scores['caption_accuracy']:.3f} "
              f"colour {scores['colour_accuracy']:.3f} shape {scores['shape_accuracy']:.3f} "
              f"motion {scores['motion_accuracy']:.3f} consistent {scores['temporal_consistency']:.3f} "
              f"({time.time() - start:.0f} s)", flush=True)
    return rows


def motion_word_row(model, tokenizer, sampler, draws: int, label: str) -> dict:
    from minivdm.toy.vdm_motion_word import motion_accuracy, one_way_draws, prompted_motions

    start = time.time()
    _, read = prompted_motions(model, tokenizer, draws, sampler=sampler, guidance_scale=3.0, num_steps=30, seed=0)
    row = {"model": label, "draws": draws, "motion_accuracy": motion_accuracy(read),
           "one_way_draws": one_way_draws(read), "read": read, "seconds": time.time() - start}
    print(f"{label:28s} motion word: accuracy {row['motion_accuracy']:.3f} over {5 * draws} samples, one way for all "
          f"four moving prompts in {row['one_way_draws']}/{draws} draws ({row['seconds']:.0f} s)", flush=True)
    return row


def denoising_row(model, tokenizer, label: str, steps: int | None, clips: int = 64) -> dict:
    from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for
    from minivdm.diffusion.parameterization import training_target
    from minivdm.text import encode_captions
    from minivdm.toy.dit import HELD_OUT_SEED, TOY_DIT_SCHEDULE, toy_dit_clips
    from minivdm.toy.vdm import TOY_VDM_SCHEDULE

    assert TOY_DIT_SCHEDULE == TOY_VDM_SCHEDULE  # one schedule, so the losses compare
    held_out = toy_dit_clips((8, 32, 32), clips, seed=HELD_OUT_SEED + 1)
    input_ids = encode_captions(tokenizer, held_out.captions)[0]
    generator = torch.Generator().manual_seed(0)
    losses = []
    for t_value in DENOISING_TIMES:
        t = torch.full((clips,), t_value)
        z_t, eps = add_noise(held_out.video, t, TOY_DIT_SCHEDULE, noise=torch.randn(held_out.video.shape,
                                                                                  generator=generator))
        alpha, sigma = alpha_sigma_for(TOY_DIT_SCHEDULE, t, held_out.video)
        with torch.no_grad():
            prediction = model(z_t, t, input_ids)
        losses.append(torch.nn.functional.mse_loss(prediction, training_target(held_out.video, eps, alpha, sigma,
                                                                               "v")).item())
    print(f"{label:28s} held-out v-loss " + " ".join(f"t={t}: {loss:.4f}" for t, loss in zip(DENOISING_TIMES, losses)),
          flush=True)
    return {"model": label, "steps": steps, "clips": clips, "t": list(DENOISING_TIMES), "loss": losses}


def merge(parts: list[str]) -> dict:
    merged = {"sizes": [], "motion_word": [], "denoising": [], "settings": {}}
    for part in parts:
        data = json.loads(Path(part).read_text())
        merged["sizes"] += data.get("sizes", [])
        merged["motion_word"] += data.get("motion_word", [])
        merged["denoising"] += data.get("denoising", [])
        merged["settings"].update(data.get("settings", {}))
    return merged


def main() -> None:
    from minivdm.toy.dit import TOY_DIT_DIR, sample_toy_dit_videos

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(TOY_DIT_DIR))
    parser.add_argument("--checkpoint", default=None, help="score the EMA weights of this checkpoint / snapshot")
    parser.add_argument("--label", default=None, help="the rows' model name (default: the folder or checkpoint)")
    parser.add_argument("--runs", default="sizes,motion-word", help=f"comma-separated groups of {RUN_GROUPS}")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--num-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--draws", type=int, default=20, help="noise draws per motion prompt (motion-word)")
    parser.add_argument("--total-steps", type=int, default=None,
                        help="training steps behind the weights, all stages (default: the checkpoint's step)")
    parser.add_argument("--merge", nargs="+", default=None, help="JSON parts to join into --out")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.merge:
        result = merge(args.merge)
    else:
        runs = args.runs.split(",")
        unknown = sorted(set(runs) - set(RUN_GROUPS))
        if unknown:
            parser.error(f"--runs: unknown groups {unknown}; choose from {RUN_GROUPS}")
        label = args.label or (args.checkpoint or args.model)
        result = {"sizes": [], "motion_word": [], "denoising": [], "settings": {
            "prompts": args.prompts, "num_steps": args.num_steps, "guidance": args.guidance, "draws": args.draws,
            "torch": torch.__version__, "threads": torch.get_num_threads()}}
        if "sizes" in runs or "motion-word" in runs or "denoising" in runs:
            model, tokenizer, steps = load_model(args)
            if "denoising" in runs:
                result["denoising"].append(denoising_row(model, tokenizer, label, steps))
            if "sizes" in runs:
                result["sizes"] = size_rows(model, tokenizer, args, label)
            if "motion-word" in runs:
                result["motion_word"].append(motion_word_row(model, tokenizer, sample_toy_dit_videos, args.draws, label))
        if any(run.startswith("vdm-") for run in runs):
            from minivdm.toy.vdm import TOY_VDM_FRAMES, evaluate_toy_vdm, load_toy_vdm, sample_toy_videos

            vdm, vdm_tokenizer = load_toy_vdm()
            vdm_label = "toy VDM (chapter 3, shipped)"
            if "vdm-sizes" in runs:
                def evaluate_vdm(model, tokenizer, prompts, size, **sampling):  # its one size
                    return evaluate_toy_vdm(model, tokenizer, prompts, num_frames=size[0], **sampling)

                result["sizes"] += size_rows(vdm, vdm_tokenizer, args, vdm_label, sizes=[(TOY_VDM_FRAMES, 32, 32)],
                                             evaluate=evaluate_vdm)
            if "vdm-motion-word" in runs:
                result["motion_word"].append(motion_word_row(vdm, vdm_tokenizer, sample_toy_videos, args.draws,
                                                             vdm_label))
            if "vdm-denoising" in runs:
                result["denoising"].append(denoising_row(vdm, vdm_tokenizer, vdm_label, None))
    if args.out:
        write_text_atomically(Path(args.out), json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
