"""Does the toy VDM's motion word steer its samples? Two measurements, shown in tutorial 3 (section 8) and
printed by ``bench/toy_vdm_motion_word.py`` (figures 5 and 6).

- ``prompted_motions``: "a red circle <motion>" for each of the toy world's motions, from the **same** noise draws,
  and the motion the oracle reads in every sample. Where the word steers, a draw's readings follow the prompt;
  where the noise steers, a draw moves one way whatever the prompt says (``one_way_draws`` counts those).
- ``motion_word_cosines``: the cosine between the moving motion words at their own token, before the text encoder
  (its input embeddings) and after it (the states cross-attention and the pooled caption read). Near 1 for a pair:
  the U-Net is told almost nothing about which of the two it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minivdm.text import encode_captions
from minivdm.toy.vdm import sample_toy_videos
from minivdm.toyworld import MOTIONS
from minivdm.toyworld.oracle import read_video

MOVING = tuple(motion for motion in MOTIONS if motion != "still")


def red_circle_prompt(motion: str) -> str:
    """'a red circle moving left', ..., 'a red circle standing still' (the toy world's caption wording)."""
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    return "a red circle standing still" if motion == "still" else f"a red circle moving {motion}"


def prompted_motions(model, tokenizer, draws: int = 8, *, sampler=sample_toy_videos,
                     **sampling) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Samples of ``red_circle_prompt(motion)`` for every motion from the same ``draws`` noise draws
    (``sampling`` goes to ``sampler``, its seed included: ``sample_toy_videos`` for the toy VDM,
    ``minivdm.toy.dit.sample_toy_dit_videos`` for the toy DiT). Returns motion -> videos (draws, 3, T, H, W)
    and motion -> the motion the oracle reads in each draw ("nothing" where it sees no object)."""
    videos, read = {}, {}
    for motion in MOTIONS:
        videos[motion] = sampler(model, tokenizer, [red_circle_prompt(motion)] * draws, **sampling).cpu()
        read[motion] = [objects[0].motion if objects else "nothing" for objects in read_video(videos[motion])]
    return videos, read


def motion_accuracy(read: dict[str, list[str]]) -> float:
    """The fraction of samples whose read motion is the prompted one (chance: 1 / 5)."""
    return sum(seen == motion for motion, readings in read.items() for seen in readings) / sum(map(len, read.values()))


def one_way_draws(read: dict[str, list[str]]) -> int:
    """How many noise draws move the same way for all four moving prompts: there the noise, not the word, decides."""
    draws = len(read[MOVING[0]])
    return sum(len({read[motion][k] for motion in MOVING}) == 1 for k in range(draws))


@torch.no_grad()
def motion_word_cosines(model, tokenizer) -> dict[str, torch.Tensor]:
    """(4, 4) cosines between the moving words (in ``MOVING`` order) at their own token of 'a red circle moving
    <word>': "input embedding" (before the text encoder) and "encoder output" (what the U-Net reads)."""
    input_ids, _ = encode_captions(tokenizer, [red_circle_prompt(motion) for motion in MOVING])
    input_ids = input_ids.to(next(model.parameters()).device)
    position = (input_ids != input_ids[0]).any(0).nonzero()[0].item()  # the captions differ only at the motion word
    states = {"input embedding": model.text_encoder.get_input_embeddings()(input_ids)[:, position],
              "encoder output": model.text_encoder(input_ids)[0][:, position]}
    cosines = {}
    for name, vectors in states.items():
        vectors = F.normalize(vectors.float().cpu(), dim=-1)
        cosines[name] = vectors @ vectors.T
    return cosines
