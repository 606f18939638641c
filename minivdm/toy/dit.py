"""The toy world's Diffusion Transformer (chapter 11): ONE text-to-video model over spacetime patches that samples
8- and 16-frame clips at 32x32 and 32x48.

* the model: ``minivdm.models.dit.VideoDiT`` in CogVideoX's form (``TOY_DIT``): the caption's tokens concatenated to the
  video's tokens in full 3D attention, expert adaLN-Zero on the time, 3D rotary positions over (t', h', w'), patches
  of 2 frames x 4 x 4 pixels (256 tokens for 8 frames at 32x32, 768 for 16 frames at 32x48), trained from scratch;
* the text: the toy tokenizer and a fresh toy CLIP text encoder (2 layers, width 64), trained with the DiT (CogVideoX
  keeps T5 frozen; a toy encoder has nothing to be frozen from); padding tokens are masked out of attention;
* the data: toy-world clips at the four sizes ``TOY_DIT_SIZES`` (5,000 of each, 1-2 objects); every step draws one
  size for its whole batch (bucketing: no padding, and a batch is one tensor);
* the objective: v-prediction under the toy VDM's cosine schedule (chapter 3), so that the two models are trained on
  the same problem; captions dropped 10% of the time for classifier-free guidance.

Saved as a folder: ``dit.safetensors`` (metadata: config, command, training figures), ``text_encoder/``, ``tokenizer/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from minivdm.io.checkpoints import read_safetensors
from minivdm.models.dit import DiTConfig, VideoDiT, zero_init_modulation
from minivdm.toy import DATA_DIR, read_metadata
from minivdm.toy.vdm import TOY_VDM_SCHEDULE
from minivdm.train import TrainConfig, describe, save_weights, train
from minivdm.validation import check_positive_int

TOY_DIT_DIR = DATA_DIR / "toy_dit"
WEIGHTS_FILE = "dit.safetensors"
TOY_DIT = DiTConfig(name="toy-dit", text_conditioning="joint", attention="full", positions="rotary", in_channels=3,
                    out_channels=3, patch_size=4, patch_size_t=2, num_attention_heads=4, attention_head_dim=32,
                    num_layers=6, text_embed_dim=64, time_embed_dim=64)
TOY_DIT_SIZES = ((8, 32, 32), (16, 32, 32), (8, 32, 48), (16, 32, 48))   # (T, H, W) trained and measured
TOY_DIT_SCHEDULE = TOY_VDM_SCHEDULE  # the toy VDM's (chapter 3): the same problem for both models
TOY_DIT_DATASET_SIZE = 5000          # clips per size
TOY_DIT_BATCH_SIZE = 8               # clips per step, all of one size
TOY_DIT_CAPTION_DROPOUT = 0.1
TOY_DIT_TRAIN = TrainConfig(steps=20000, learning_rate=4e-4, warmup_steps=200, ema_decay=0.998, seed=0,
                            checkpoint_every=100, log_every=50)
# a second stage from a trained folder: the learning rate decays to zero (cosine), which sharpens the model at the end
TOY_DIT_ANNEAL = TrainConfig(steps=3000, learning_rate=4e-4, warmup_steps=50, ema_decay=0.998, seed=1,
                             checkpoint_every=100, log_every=50, decay="cosine")
HELD_OUT_SEED = 20_011               # prompts and clips no model of the course was trained on


class ToyTextToVideoDiT(torch.nn.Module):
    """``model(z_t, t, input_ids)`` predicts v for a video z_t (B, 3, T, H, W), t in [0, 1] (fed as 1000 t)."""

    def __init__(self, dit: VideoDiT, text_encoder):
        super().__init__()
        self.dit, self.text_encoder = dit, text_encoder

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        words = input_ids != self.text_encoder.config.pad_token_id
        text = self.text_encoder(input_ids, attention_mask=words.long())[0]
        return self.dit(z_t, 1000 * t, text, text_mask=words)


def build_toy_dit(seed: int = 0) -> ToyTextToVideoDiT:
    """The untrained toy DiT (adaLN-Zero: every block starts as the identity) and a fresh toy text encoder."""
    from minivdm.text import build_toy_text_encoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dit = zero_init_modulation(VideoDiT(TOY_DIT))
    return ToyTextToVideoDiT(dit, build_toy_text_encoder(seed=seed))


def toy_dit_clips(size: tuple[int, int, int], n: int, seed: int):
    """n captioned toy clips of (T, H, W) = ``size`` (1-2 objects)."""
    from minivdm.toyworld import generate
    from minivdm.toyworld.world import ToyWorldConfig

    frames, height, width = size
    return generate(n, seed=seed, config=ToyWorldConfig(size=height, width=width, frames=frames))


def train_toy_dit(out: str | Path = TOY_DIT_DIR, *, config: TrainConfig = TOY_DIT_TRAIN,
                  dataset_size: int = TOY_DIT_DATASET_SIZE, batch_size: int = TOY_DIT_BATCH_SIZE,
                  sizes: tuple[tuple[int, int, int], ...] = TOY_DIT_SIZES, checkpoint_dir: str | Path | None = None,
                  max_minutes: float | None = None, init_from: str | Path | None = None, command: str = "",
                  device: str = "cpu", progress: bool = True) -> Path:
    """Train the toy DiT and its text encoder and write the folder (dit.safetensors, text_encoder/, tokenizer/).
    Each step's batch is ``batch_size`` clips of one of ``sizes`` (drawn uniformly). From scratch, or from the
    weights of a folder this function wrote (``init_from``: a second stage, e.g. ``TOY_DIT_ANNEAL``); the data are
    drawn with ``config.seed``, so a stage with another seed sees other clips."""
    from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for
    from minivdm.diffusion.parameterization import training_target
    from minivdm.text import build_toy_tokenizer, encode_captions, save_toy_text_stack

    check_positive_int(batch_size, "batch_size")
    check_positive_int(dataset_size, "dataset_size")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be > 0 (or None for no limit), got {max_minutes}")
    history = []  # the commands that made the starting weights, oldest first
    if init_from is None:
        model = build_toy_dit(config.seed).train()
    else:
        model, _ = load_toy_dit(init_from)
        model.train()
        earlier = read_metadata(Path(init_from) / WEIGHTS_FILE)
        history = [*json.loads(earlier.get("init_from") or "[]"), earlier["command"]]
    tokenizer = build_toy_tokenizer()
    empty_ids, _ = encode_captions(tokenizer, [""])
    data = []
    for index, size in enumerate(sizes):
        clips = toy_dit_clips(size, dataset_size, seed=config.seed * 100 + index)
        data.append((clips.video, encode_captions(tokenizer, clips.captions)[0]))

    def next_batch(step: int, generator: torch.Generator):
        videos, ids = data[int(torch.randint(len(data), (1,), generator=generator))]
        pick = torch.randint(len(videos), (batch_size,), generator=generator)
        dropped = torch.rand(batch_size, generator=generator) < TOY_DIT_CAPTION_DROPOUT
        x = videos[pick]
        return (x, torch.where(dropped[:, None], empty_ids, ids[pick]), torch.rand(batch_size, generator=generator),
                torch.randn(x.shape, generator=generator))

    def loss_fn(model, batch, generator: torch.Generator) -> torch.Tensor:
        x, ids, t, noise = batch
        z_t, eps = add_noise(x, t, TOY_DIT_SCHEDULE, noise=noise)
        alpha, sigma = alpha_sigma_for(TOY_DIT_SCHEDULE, t, x)
        return torch.nn.functional.mse_loss(model(z_t, t, ids), training_target(x, eps, alpha, sigma, "v"))

    described = {"recipe": "toy-dit", "dataset_size": dataset_size, "batch_size": batch_size,
                 "sizes": [list(size) for size in sizes], "caption_dropout": TOY_DIT_CAPTION_DROPOUT}
    if init_from is not None:  # only then, so that first-stage checkpoints written before this key existed resume
        described["init_from"] = str(Path(init_from).resolve())
    result = train(model, next_batch, loss_fn, config, checkpoint_dir, run_description=described, device=device,
                   progress=progress, max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    out = Path(out)
    trained = result.ema_model
    metadata = {"command": command, "model_config": json.dumps(asdict(TOY_DIT)), "train_config": describe(config),
                "steps": str(result.steps_done), "train_seconds": f"{result.seconds:.0f}",
                "clips_seen": str(result.steps_done * batch_size), "batch_size": str(batch_size),
                "dataset_size": str(dataset_size), "sizes": json.dumps([list(size) for size in sizes]),
                "schedule": repr(TOY_DIT_SCHEDULE), "prediction_type": "v", "torch": torch.__version__,
                "losses": json.dumps([round(loss, 5) for loss in result.losses]), "log_every": str(config.log_every),
                "init_from": json.dumps(history)}
    if result.stopped_early:
        metadata["stopped_early_at_max_minutes"] = f"{max_minutes:g}"
    save_weights(trained.dit, out / WEIGHTS_FILE, metadata)
    save_toy_text_stack(out, tokenizer, trained.text_encoder)
    return out


def load_toy_dit(folder: str | Path = TOY_DIT_DIR, device: str | torch.device = "cpu"):
    """(model, tokenizer) of a toy DiT folder; ``model(z_t, t, input_ids)`` predicts v."""
    from minivdm.text import load_toy_text_stack

    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"no toy DiT at {folder}; train one with `python -m minivdm train-toy-dit --out {folder}`")
    fields = json.loads(read_metadata(weights)["model_config"])
    dit = VideoDiT(DiTConfig(**fields))
    dit.load_state_dict(read_safetensors(weights), strict=True)
    tokenizer, text_encoder = load_toy_text_stack(folder)
    return ToyTextToVideoDiT(dit, text_encoder).to(device).eval(), tokenizer


@torch.no_grad()
def sample_toy_dit_videos(model: ToyTextToVideoDiT, tokenizer, prompts: list[str], *, size=(8, 32, 32),
                          guidance_scale: float = 3.0, num_steps: int = 20, seed: int = 0,
                          progress: bool = False) -> torch.Tensor:
    """Videos (B, 3, T, H, W) in [-1, 1] of (T, H, W) = ``size`` for toy-world prompts: our DDIM with guidance."""
    from minivdm.diffusion import guided_model, sample
    from minivdm.text import encode_captions

    frames, height, width = size
    input_ids, _ = encode_captions(tokenizer, list(prompts))
    null_ids, _ = encode_captions(tokenizer, [""] * len(prompts))
    device = next(model.parameters()).device
    model_fn = guided_model(model, input_ids.to(device), null_ids.to(device), guidance_scale)
    z_1 = torch.randn(len(prompts), 3, frames, height, width, generator=torch.Generator().manual_seed(seed)).to(device)
    x_0 = sample(model_fn, z_1, TOY_DIT_SCHEDULE, TOY_DIT_SCHEDULE.uniform_times(num_steps), prediction_type="v",
                 progress=progress)
    return x_0.clamp(-1, 1)


def held_out_prompts(n: int, size=(8, 32, 32)) -> list[str]:
    """Captions of n held-out toy clips of ``size`` (1-2 objects; colour, shape and motion of each)."""
    return toy_dit_clips(size, n, seed=HELD_OUT_SEED).captions


def evaluate_toy_dit(model: ToyTextToVideoDiT, tokenizer, prompts: list[str], *, size=(8, 32, 32),
                     batch_size: int = 25, **sampling) -> dict[str, float]:
    """Oracle scores of one sample per prompt at ``size``: caption_accuracy = colour, shape and motion of every
    object right."""
    from minivdm.toyworld.oracle import score_videos

    seed = sampling.pop("seed", 0)  # each batch its own noise: seed + its first prompt's index
    videos = torch.cat([sample_toy_dit_videos(model, tokenizer, prompts[i:i + batch_size], size=size,
                                              seed=seed + i, **sampling)
                        for i in range(0, len(prompts), batch_size)])
    return score_videos(videos.cpu(), prompts)
