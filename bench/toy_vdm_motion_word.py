"""How much the toy VDM uses the motion word of its caption: the measurements behind its motion accuracy.

    OMP_NUM_THREADS=2 .venv/bin/python bench/toy_vdm_motion_word.py [--folder data/toy_vdm] [--checkpoint last.pt]

Figures 1-3 and 6 (4 and 5 on request), all on held-out clips (generate(seed=99)) with fixed noise, a few minutes on 2 threads:

1. v-loss gap: (loss with the motion word flipped, left <-> right, up <-> down) / (loss with the true caption) - 1,
   at several t. 0 means the model ignores the word. The empty caption's loss is printed beside it as the scale
   of what the whole caption is worth.
2. At pure noise (t = 0.999) the best prediction of x is the mean clip of the caption, E[x | caption]. The floor of the
   x error is measured with caption means of the training draw (one-object moving clips): with the motion word, and
   with colour and shape only. A model that reads the motion word gets below the second floor.
3. Where the model puts "a red circle moving left / right" at pure noise: the centre (x) of its predicted red in each
   frame, averaged over noise draws, beside the same centre in the training clips' mean. A model that reads the word
   moves its mean with the frame index.
4. With ``--decision`` (about 5 more minutes): where in sampling the direction is decided, and whether the word
   decides it. One-object moving clips are noised to t0 and denoised by DDIM (15 steps, guidance 3) with the true
   caption and with the motion word flipped; the oracle reads the direction of each result. At small t0 the
   clip keeps its direction whatever the caption; where "kept" falls towards chance (1/5) the direction is decided,
   and a model that reads the word keeps it there with the true caption and loses it with the flipped one.

5. With ``--prompted`` (about 1.5 more minutes): what sampling makes of the word. "a red circle <motion>" for each
   of the five motions, 8 noise draws each (the same draws for every prompt; DDIM 30 steps, guidance 3), and the
   motion the oracle reads in each sample. Motion accuracy (chance 1/5) and the number of noise draws that give
   the same direction for all four moving prompts: there the noise, not the word, picks the way.

6. What the caption carries (seconds): the cosine between the motion words "left", "right", "up" and "down" in
   "a red circle moving <word>", at the word's own token, for the text encoder's input embedding and for its output
   state (what cross-attention and the pooled caption read). Near 1 for a pair: the U-Net is told almost nothing
   about which of the two it is.

``--checkpoint`` scores the EMA weights of a ``train-vdm --checkpoint-dir`` checkpoint instead of the folder's.
"""

from __future__ import annotations

import argparse
import re

import torch

FLIPPED = {"left": "right", "right": "left", "up": "down", "down": "up"}
TIMES = (0.5, 0.7, 0.85, 0.95, 0.999)


def flip_motion_words(captions: list[str]) -> list[str]:
    """Every "moving left" becomes "moving right" (and up <-> down); "standing still" stays."""
    return [re.sub(r"moving (\w+)", lambda m: "moving " + FLIPPED[m.group(1)], c) for c in captions]


def predicted_x(model, z, t, input_ids):
    from minivdm.toy.vdm import TOY_VDM_SCHEDULE

    alpha, sigma = (value.view(-1, 1, 1, 1, 1) for value in TOY_VDM_SCHEDULE.alpha_sigma(t))
    with torch.no_grad():
        return alpha * z - sigma * model(z, t, input_ids)  # x from v


def red_centre_x(video: torch.Tensor) -> list[float]:
    """(3, T, H, W) -> per frame, the x centre of mass of how much redder than the other channels each pixel is."""
    red = (video[0] - video[1:].mean(0)).clamp(min=0)  # (T, H, W)
    columns = red.sum(1)  # (T, W)
    return ((columns * torch.arange(columns.shape[-1])).sum(-1) / columns.sum(-1)).tolist()


def main() -> None:
    from minivdm.diffusion.forward_process import add_noise
    from minivdm.text import encode_captions
    from minivdm.toy.vdm import TOY_VDM_DATASET_SIZE, TOY_VDM_DIR, TOY_VDM_FRAMES, TOY_VDM_SCHEDULE, load_toy_vdm
    from minivdm.toyworld import generate
    from minivdm.toyworld.world import ToyWorldConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(TOY_VDM_DIR))
    parser.add_argument("--checkpoint", default=None, help="a train-vdm checkpoint whose EMA weights to score")
    parser.add_argument("--clips", type=int, default=48, help="held-out moving clips per figure")
    parser.add_argument("--decision", action="store_true", help="also figure 4 (denoising from t0)")
    parser.add_argument("--prompted", action="store_true", help="also figure 5 (samples of 'a red circle <motion>')")
    args = parser.parse_args()
    model, tokenizer = load_toy_vdm(args.folder)
    if args.checkpoint:
        checkpoint = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(checkpoint["ema_model"])
        print(f"EMA weights of step {checkpoint['step']} from {args.checkpoint}")
    ids = lambda captions: encode_captions(tokenizer, captions)[0]  # noqa: E731
    config = ToyWorldConfig(frames=TOY_VDM_FRAMES)

    held_out = generate(6 * args.clips, seed=99, config=config)
    moving = [i for i, objects in enumerate(held_out.objects) if any(o.motion != "still" for o in objects)][:args.clips]
    x = held_out.video[moving]
    captions = [held_out.captions[i] for i in moving]
    flipped = flip_motion_words(captions)
    print(f"1. v-loss on {len(moving)} held-out clips with a moving object")
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    for t_value in TIMES:
        t = torch.full((len(x),), t_value)
        z, _ = add_noise(x, t, TOY_VDM_SCHEDULE, noise=noise)
        loss = {name: ((predicted_x(model, z, t, ids(c)) - x) ** 2).mean().item()  # x error = sigma^2 * v error
                for name, c in (("true", captions), ("flipped", flipped), ("empty", [""] * len(x)))}
        print(f"   t={t_value}: gap {loss['flipped'] / loss['true'] - 1:+.2%}  "
              f"(empty caption {loss['empty'] / loss['true'] - 1:+.1%})")

    train = generate(TOY_VDM_DATASET_SIZE, seed=0, config=config)  # the first stage's draw
    by_caption, by_look = {}, {}
    for i, objects in enumerate(train.objects):
        by_caption.setdefault(train.captions[i], []).append(i)
        if len(objects) == 1:
            by_look.setdefault((objects[0].colour, objects[0].shape), []).append(i)
    single = [i for i, objects in enumerate(held_out.objects)
              if len(objects) == 1 and objects[0].motion != "still" and held_out.captions[i] in by_caption][:args.clips]
    x = held_out.video[single]
    with_motion = torch.stack([train.video[by_caption[held_out.captions[i]]].mean(0) for i in single])
    look_only = torch.stack([train.video[by_look[(held_out.objects[i][0].colour, held_out.objects[i][0].shape)]].mean(0)
                             for i in single])
    t = torch.full((len(x),), 0.999)
    z, _ = add_noise(x, t, TOY_VDM_SCHEDULE, noise=noise[:len(x)])
    model_error = ((predicted_x(model, z, t, ids([held_out.captions[i] for i in single])) - x) ** 2).mean().item()
    print(f"2. x error at t=0.999 on {len(single)} one-object moving clips: model {model_error:.4f}; caption-mean floor "
          f"with the motion word {((with_motion - x) ** 2).mean():.4f}, colour and shape only "
          f"{((look_only - x) ** 2).mean():.4f}")

    print("3. x centre of the red in each frame at t=0.999 (model: mean over 16 noise draws)")
    z = torch.randn(16, 3, TOY_VDM_FRAMES, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.full((16,), 0.999)
    for motion in ("left", "right"):
        caption = f"a red circle moving {motion}"
        model_mean = predicted_x(model, z, t, ids([caption] * 16)).mean(0)
        data_mean = train.video[by_caption[caption]].mean(0)
        print(f"   {caption:26s} model " + " ".join(f"{c:5.1f}" for c in red_centre_x(model_mean)))
        print(f"   {'':26s} data  " + " ".join(f"{c:5.1f}" for c in red_centre_x(data_mean)))
    motion_word_states(model, tokenizer)
    if args.decision:
        decision(model, ids, held_out, single[:24])
    if args.prompted:
        prompted(model, tokenizer)


def prompted(model, tokenizer, draws: int = 8) -> None:
    """Figure 5: the motion the oracle reads in samples of "a red circle <motion>", per prompt and noise draw."""
    from minivdm.toy.vdm_motion_word import motion_accuracy, one_way_draws, prompted_motions, red_circle_prompt

    print(f"5. motion read in samples of 'a red circle <motion>', noise draws 0..{draws - 1} (chance 0.2)")
    _, read = prompted_motions(model, tokenizer, draws, seed=0)
    for motion, seen in read.items():
        print(f"   {red_circle_prompt(motion):28s} " + " ".join(f"{m:5s}" for m in seen))
    print(f"   motion accuracy {motion_accuracy(read):.3f}; noise draws with one direction for all four moving "
          f"prompts: {one_way_draws(read)}/{draws}")


def motion_word_states(model, tokenizer) -> None:
    """Figure 6: how alike the text encoder makes the four motion words, at their own token."""
    from minivdm.toy.vdm_motion_word import MOVING, motion_word_cosines

    print("6. cosine between motion words at their own token (a red circle moving <word>)")
    for name, cosine in motion_word_cosines(model, tokenizer).items():
        print(f"   {name:16s} " + "  ".join(f"{MOVING[i]}/{MOVING[j]} {cosine[i, j]:+.3f}"
                                            for i, j in ((0, 1), (2, 3), (0, 2))))


def decision(model, ids, held_out, picked: list[int], starts=(0.9, 0.95, 0.98)) -> None:
    """Figure 4: the fraction of clips whose direction survives noising to t0 and denoising, per caption."""
    from minivdm.diffusion import guided_model, sample
    from minivdm.diffusion.forward_process import add_noise
    from minivdm.toy.vdm import TOY_VDM_SCHEDULE
    from minivdm.toyworld.oracle import read_video

    x = held_out.video[picked]
    true = [held_out.captions[i] for i in picked]
    wanted = [held_out.objects[i][0].motion for i in picked]
    captions = {"true": true, "flipped": flip_motion_words(true)}
    print(f"4. direction kept after noising {len(x)} one-object moving clips to t0 and denoising (chance 0.2)")
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    for t0 in starts:
        z, _ = add_noise(x, torch.full((len(x),), t0), TOY_VDM_SCHEDULE, noise=noise)
        kept = {}
        for name, caption in captions.items():
            model_fn = guided_model(model, ids(caption), ids([""] * len(x)), 3.0)
            out = sample(model_fn, z, TOY_VDM_SCHEDULE, torch.linspace(t0, 0.0, 16, dtype=torch.float64),
                         prediction_type="v", progress=False).clamp(-1, 1)
            seen = [objects[0].motion if objects else "-" for objects in read_video(out)]
            kept[name] = sum(s == w for s, w in zip(seen, wanted)) / len(x)
        print(f"   t0={t0}: true caption {kept['true']:.2f}, flipped motion word {kept['flipped']:.2f}")


if __name__ == "__main__":
    main()
