"""The toy world's text-to-video model (the "Video Diffusion Models" chapter): how it is trained,
saved, loaded, sampled and scored.

The factorised space-time U-Net (``minivdm.models.vdm_unet``) and the toy CLIP text encoder are trained
together on toy-world clips (8 frames, 32x32), predicting v under the cosine schedule. They start from
the toy text-to-image model (``minivdm.toy.text_to_image``): its U-Net becomes the spatial layers and
temporal attention starts as the identity (``VDMUNet.from_image_unet``), so training begins from a
model that already draws the right objects in each frame and only has to learn time. Training uses
VDM's joint video-image training: each clip in a batch carries ``TOY_VDM_IMAGES_PER_CLIP`` extra independent
still images appended along time, each with its own caption, which temporal attention keeps apart.
The text encoder comes from the image model too, and that model never needed the motion words
(image captions have none): their embeddings are still at their initial scale (~0.02), while the
trained layers build hidden states of norm ~60 from the colour and shape words, so after the final
LayerNorm "moving left" and "moving right" differ by under 0.1% and the U-Net cannot tell them apart.
Later stages therefore train the word embeddings (``WORD_EMBEDDINGS``) and the rest of the encoder at a
multiple of the learning rate (``train-vdm --word-lr-factor/--text-lr-factor``).
Every random number of a step (clips, images, captions dropped, t, noise) is drawn in ``next_batch``,
so the recipe trains identically on one process or several (``minivdm.train``).

Saved as a folder: ``vdm.safetensors`` (U-Net weights; metadata: config, command, training figures),
``text_encoder/`` and ``tokenizer/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from minivdm.configs.vdm import TINY_VDM
from minivdm.diffusion import CosineSchedule
from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for
from minivdm.diffusion.parameterization import training_target
from minivdm.io.checkpoints import read_safetensors
from minivdm.models.vdm_unet import POOLED_TEXT_PARAMETERS, VDMUNet, VDMUNetConfig
from minivdm.toy import DATA_DIR, read_metadata
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_DIR, load_text_to_image
from minivdm.train import TrainConfig, describe, save_weights, train
from minivdm.validation import check_positive_int

TOY_VDM_DIR = DATA_DIR / "toy_vdm"
TOY_VDM_SCHEDULE = CosineSchedule(logsnr_max=20.0, logsnr_min=-20.0)
TOY_VDM_FRAMES = 8
TOY_VDM_IMAGES_PER_CLIP = 2
TOY_VDM_BATCH_SIZE = 8  # clips per step; each is TOY_VDM_FRAMES + TOY_VDM_IMAGES_PER_CLIP frames
TOY_VDM_DATASET_SIZE = 6000  # clips; the image pool is 3x that
TOY_VDM_CAPTION_DROPOUT = 0.1  # the unconditional branch classifier-free guidance needs
# A constant rate, so that a run can be extended (``--steps`` only grows); a cosine-annealed second
# stage from the result (``--anneal-from``), as for the text-to-image model, sharpens it at the end.
# Lower than the image model's 1e-3: every layer but temporal attention starts already trained.
TOY_VDM_TRAIN = TrainConfig(steps=3000, learning_rate=3e-4, warmup_steps=100, ema_decay=0.995, seed=0,
                            checkpoint_every=50, log_every=50)
TEXT_ENCODER_PARAMETERS = "text_encoder."  # in the name of every text encoder parameter of ToyTextToVideo
WORD_EMBEDDINGS = "text_encoder.embeddings.token_embedding."  # its word (token) embedding table
TOY_VDM_ANNEAL = TrainConfig(steps=1000, learning_rate=3e-4, warmup_steps=50, ema_decay=0.995, seed=1,
                             checkpoint_every=50, log_every=50, decay="cosine")


class ToyTextToVideo(torch.nn.Module):
    """``model(z_t, t, input_ids, num_images=0)`` predicts v; ``input_ids`` is (B, L), or (B, T, L) for a
    caption per frame (the appended images of joint training have their own)."""

    def __init__(self, vdm: VDMUNet, text_encoder):
        super().__init__()
        self.vdm, self.text_encoder = vdm, text_encoder

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, input_ids: torch.Tensor, num_images: int = 0) -> torch.Tensor:
        if input_ids.ndim == 3:
            batch = input_ids.shape[0]
            context = self.text_encoder(input_ids.flatten(0, 1))[0]
            context = context.unflatten(0, (batch, -1))  # (B, T, L, D)
        else:
            context = self.text_encoder(input_ids)[0]  # (B, L, D)
        caption_tokens = input_ids != self.text_encoder.config.pad_token_id  # the pooled text skips the padding
        return self.vdm(z_t, TOY_VDM_SCHEDULE.log_snr(t).to(z_t.device), context, num_images=num_images,
                        context_mask=caption_tokens)


def _clip_batches(dataset_size: int, seed: int):
    from minivdm.text import build_toy_tokenizer, encode_captions
    from minivdm.toyworld import generate, generate_images
    from minivdm.toyworld.world import ToyWorldConfig

    tokenizer = build_toy_tokenizer()
    clips = generate(dataset_size, seed=seed, config=ToyWorldConfig(frames=TOY_VDM_FRAMES))
    images = generate_images(3 * dataset_size, seed=seed + 1)
    clip_ids, _ = encode_captions(tokenizer, clips.captions)
    image_ids, _ = encode_captions(tokenizer, images.captions)
    empty_ids, _ = encode_captions(tokenizer, [""])
    return tokenizer, clips.video, clip_ids, images.images, image_ids, empty_ids


def train_toy_vdm(out: str | Path = TOY_VDM_DIR, *, config: TrainConfig = TOY_VDM_TRAIN,
                  model_config: VDMUNetConfig = TINY_VDM, dataset_size: int = TOY_VDM_DATASET_SIZE,
                  batch_size: int = TOY_VDM_BATCH_SIZE, checkpoint_dir: str | Path | None = None,
                  init_from: str | Path | None = None, image_model: str | Path | None = TEXT_TO_IMAGE_DIR,
                  temporal_text_modulation: bool = False, high_noise_fraction: float = 0.0,
                  high_noise_band: tuple[float, float] = (0.85, 1.0), command: str = "", device: str = "cpu",
                  max_minutes: float | None = None) -> Path:
    """Train the toy text-to-video VDM and write its folder (vdm.safetensors, text_encoder/, tokenizer/).

    ``init_from`` starts from the weights of a folder this function wrote (a second stage); otherwise
    ``image_model`` (a toy text-to-image folder) is inflated into the first model, or, when None,
    training starts from random weights with ``model_config``.

    ``temporal_text_modulation`` adds, if the starting model lacks it, the pooled caption's scale and
    shift of every temporal attention (``VDMUNetConfig.temporal_text_modulation``), starting at zero.
    ``high_noise_fraction`` of the clips draw t uniformly in ``high_noise_band`` instead of [0, 1]:
    the motion direction of a sample is decided at high noise (``bench/toy_vdm_motion_word.py
    --decision``: between t = 0.95 and 0.98), where uniform t puts few of a batch's clips.

    ``device`` ("cpu" or "cuda") is where the steps run; the data is drawn on the CPU either way.
    ``max_minutes`` is a wall-clock budget for the training steps: when it runs out the run is
    checkpointed and the model so far (EMA weights) is written as usual, its metadata recording the
    steps reached; the same command with ``checkpoint_dir`` goes on from there, with any budget.
    """
    check_positive_int(batch_size, "batch_size")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be > 0 (or None for no limit), got {max_minutes}")
    if not 0.0 <= high_noise_fraction <= 1.0 or not 0.0 <= high_noise_band[0] < high_noise_band[1] <= 1.0:
        raise ValueError(f"high_noise_fraction must be in [0, 1] and high_noise_band (lo, hi) with 0 <= lo < hi <= 1, "
                         f"got {high_noise_fraction} and {high_noise_band}")
    from minivdm.text import build_toy_text_encoder, save_toy_text_stack

    torch.manual_seed(config.seed)
    history = []  # the commands that made the starting weights, oldest first
    if init_from is not None:
        model, _ = load_toy_vdm(init_from)
        model_config = model.vdm.config
        history = _command_history(read_metadata(Path(init_from) / "vdm.safetensors"))
    elif image_model is not None:
        image, _ = load_text_to_image(image_model)
        model = ToyTextToVideo(VDMUNet.from_image_unet(image.unet, name=model_config.name,
                                                       max_relative_distance=model_config.max_relative_distance),
                               image.text_encoder)
        model_config = model.vdm.config
        history = _command_history(json.loads((Path(image_model) / "unet" / "config.json").read_text())["_minivdm"])
    else:
        model = ToyTextToVideo(VDMUNet(model_config), build_toy_text_encoder(seed=config.seed))
    if temporal_text_modulation and not model_config.temporal_text_modulation:
        model = ToyTextToVideo(_with_temporal_text_modulation(model.vdm), model.text_encoder)
        model_config = model.vdm.config
    model.train()
    tokenizer, clips, clip_ids, images, image_ids, empty_ids = _clip_batches(dataset_size, config.seed)
    frames, extra = TOY_VDM_FRAMES, TOY_VDM_IMAGES_PER_CLIP

    def next_batch(step: int, generator: torch.Generator):
        pick = torch.randint(len(clips), (batch_size,), generator=generator)
        pick_images = torch.randint(len(images), (batch_size, extra), generator=generator)
        # (B, C, T + extra, H, W): the clip's frames, then its appended still images
        x = torch.cat([clips[pick], images[pick_images].permute(0, 2, 1, 3, 4)], dim=2)
        ids = torch.cat([clip_ids[pick, None].expand(-1, frames, -1), image_ids[pick_images]], dim=1)  # (B, T', L)
        dropped = torch.rand(batch_size, frames + extra, generator=generator) < TOY_VDM_CAPTION_DROPOUT
        dropped[:, :frames] = dropped[:, :1]  # a clip's caption is dropped for all its frames at once
        ids = torch.where(dropped[..., None], empty_ids, ids)
        t = torch.rand(batch_size, generator=generator)
        if high_noise_fraction > 0:  # drawn only then, so that recipes without it keep their random stream
            low, high = high_noise_band
            emphasised = torch.rand(batch_size, generator=generator) < high_noise_fraction
            t = torch.where(emphasised, low + (high - low) * t, t)
        noise = torch.randn(x.shape, generator=generator)
        return x, ids, t, noise

    def loss_fn(model, batch, generator: torch.Generator) -> torch.Tensor:
        # train() has moved the whole batch to the model's device; nothing here is drawn or made on the CPU
        x, ids, t, noise = batch
        z_t, eps = add_noise(x, t, TOY_VDM_SCHEDULE, noise=noise)
        alpha, sigma = alpha_sigma_for(TOY_VDM_SCHEDULE, t, x)
        v_hat = model(z_t, t, ids, num_images=extra)
        return torch.nn.functional.mse_loss(v_hat, training_target(x, eps, alpha, sigma, "v"))

    # what train() cannot see: a checkpoint of another recipe or data must not be continued (the device and
    # the time budget change no trained weight, so they are left out and a resumed run may change them)
    described = {"recipe": "toy-vdm", "dataset_size": dataset_size, "batch_size": batch_size,
                 "init_from": None if init_from is None else str(Path(init_from).resolve()),
                 "image_model": None if image_model is None else str(Path(image_model).resolve()),
                 "temporal_text_modulation": temporal_text_modulation, "high_noise_fraction": high_noise_fraction,
                 "high_noise_band": list(high_noise_band)}
    result = train(model, next_batch, loss_fn, config, checkpoint_dir, run_description=described, device=device,
                   max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    out = Path(out)
    if not result.is_main_process:
        return out
    trained = result.ema_model
    metadata = {
        "command": command, "model_config": json.dumps(asdict(model_config)), "train_config": describe(config),
        "batch_size": str(batch_size), "images_per_clip": str(extra), "dataset_size": str(dataset_size),
        "train_seconds": f"{result.seconds:.0f}", "final_loss": f"{result.losses[-1]:.5f}" if result.losses else "",
        "schedule": repr(TOY_VDM_SCHEDULE), "prediction_type": "v", "torch": torch.__version__,
        "init_from": json.dumps(history),
        "high_noise": f"{high_noise_fraction} of t in {list(high_noise_band)}" if high_noise_fraction > 0 else "",
        "steps": str(result.steps_done),  # train_config's steps is the target; a timed-out run stops short of it
    }
    if result.stopped_early:
        metadata["stopped_early_at_max_minutes"] = f"{max_minutes:g}"
    save_weights(trained.vdm, out / "vdm.safetensors", metadata)
    save_toy_text_stack(out, tokenizer, trained.text_encoder)
    return out


def _with_temporal_text_modulation(vdm: VDMUNet) -> VDMUNet:
    """The same U-Net with the pooled caption's modulation of temporal attention added, at zero (same function)."""
    grown = VDMUNet(replace(vdm.config, temporal_text_modulation=True))
    missing, unexpected = grown.load_state_dict(vdm.state_dict(), strict=False)
    if unexpected or any(".modulation." not in key for key in missing):
        raise ValueError(f"cannot add the modulation: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return grown


def _command_history(metadata: dict) -> list[str]:
    """Every command behind a saved model, oldest first: its own ``init_from`` list, then its command."""
    earlier = metadata.get("init_from") or []
    if isinstance(earlier, str):  # safetensors metadata holds strings; older files held one command, not a list
        earlier = json.loads(earlier) if earlier.startswith("[") else [earlier]
    return [*earlier, metadata["command"]]


def load_toy_vdm(folder: str | Path = TOY_VDM_DIR, device: str | torch.device = "cpu"):
    """(model, tokenizer) of the shipped toy text-to-video VDM; ``model(z_t, t, input_ids)`` predicts v."""
    from minivdm.text import load_toy_text_stack

    folder = Path(folder)
    weights = folder / "vdm.safetensors"
    if not weights.exists():
        raise FileNotFoundError(f"no toy VDM at {folder}; train one with `python -m minivdm train-vdm --out {folder}`")
    fields = json.loads(read_metadata(weights)["model_config"])
    fields = {key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()}
    vdm = VDMUNet(replace(TINY_VDM, **fields))
    vdm.load_state_dict(_upgrade_older_weights(read_safetensors(weights), vdm), strict=True)
    tokenizer, text_encoder = load_toy_text_stack(folder)
    return ToyTextToVideo(vdm, text_encoder).to(device).eval(), tokenizer


# the relative-position tables of TemporalAttention under their earlier names -> the equation's symbols
# (minivdm.nn.relative_position): b the bias on the logits, a the key offsets, r the value offsets
_RENAMED_RELATIVE_TABLES = {
    ".relative_position.relative_attention_bias": ".bias_b.table",
    ".relative_keys.embedding": ".key_offsets_a.table",
    ".relative_values.embedding": ".value_offsets_r.table",
    ".relative_values.relative_value_embedding": ".value_offsets_r.table",  # the toy VDM's stages 1-3
}


def _upgrade_older_weights(state: dict[str, torch.Tensor], vdm: VDMUNet) -> dict[str, torch.Tensor]:
    """Weights written under older names or before some layers existed load into today's VDMUNet.

    Tables of relative positions saved under their earlier names (``_RENAMED_RELATIVE_TABLES``) are
    renamed. Weights written before the key offsets a and the pooled text existed (the toy VDM's
    stages 1-3; README) get those layers at zero, the value they start training from: the same
    function. Any other mismatch is left for load_state_dict to report."""
    def renamed(key: str) -> str:
        for old, new in _RENAMED_RELATIVE_TABLES.items():
            if key.endswith(old):
                return key[:-len(old)] + new
        return key

    state = {renamed(key): value for key, value in state.items()}
    for key, value in vdm.state_dict().items():
        if key not in state and (".key_offsets_a." in key or key.startswith(POOLED_TEXT_PARAMETERS)):
            state[key] = torch.zeros_like(value)
    return state


@torch.no_grad()
def sample_toy_videos(model: ToyTextToVideo, tokenizer, prompts: list[str], *, guidance_scale: float = 3.0,
                      num_steps: int = 30, num_frames: int = TOY_VDM_FRAMES, seed: int = 0,
                      progress: bool = False) -> torch.Tensor:
    """Videos (B, 3, T, 32, 32) in [-1, 1] for toy-world prompts: our DDIM with classifier-free guidance."""
    from minivdm.diffusion import guided_model, sample
    from minivdm.text import encode_captions

    input_ids, _ = encode_captions(tokenizer, list(prompts))
    null_ids, _ = encode_captions(tokenizer, [""] * len(prompts))
    device = next(model.parameters()).device
    model_fn = guided_model(model, input_ids.to(device), null_ids.to(device), guidance_scale)
    z_1 = torch.randn(len(prompts), 3, num_frames, 32, 32, generator=torch.Generator().manual_seed(seed)).to(device)
    x_0 = sample(model_fn, z_1, TOY_VDM_SCHEDULE, TOY_VDM_SCHEDULE.uniform_times(num_steps), prediction_type="v",
                 progress=progress)
    return x_0.clamp(-1, 1)


def evaluate_toy_vdm(model: ToyTextToVideo, tokenizer, prompts: list[str], *, batch_size: int = 32,
                     **sampling) -> dict[str, float]:
    """Oracle scores of one sample per prompt: caption_accuracy = colour, shape and motion of every object right."""
    from minivdm.toyworld.oracle import score_videos

    videos = torch.cat([sample_toy_videos(model, tokenizer, prompts[i:i + batch_size], **sampling)
                        for i in range(0, len(prompts), batch_size)])
    return score_videos(videos.cpu(), prompts)
