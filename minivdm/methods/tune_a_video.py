r"""Tune-A-Video: one-shot tuning of a text-to-image model on ONE video, then editing it by prompt
(Wu et al., 2023, arXiv:2212.11565).

1. Inflate the image U-Net (``minivdm.models.tune_a_video_unet``): ST-Attn (frame i attends to frames 1
   and i-1) in place of self-attention, a zero-output T-Attn after each transformer block.
2. Tune on the one (video V, prompt P): with z_0 = E(V) (the VAE's latents, or the pixels of the toy
   world) and c = CLIP(P), minimise the usual diffusion loss over t and eps,

       L = E_{t, eps} || eps - eps_theta(alpha_t z_0 + sigma_t eps, t, c) ||^2

   (the v-target for a v-model), updating only T-Attn and the query projections W^Q of ST-Attn and
   cross-attention (Sec. 4.2). A few hundred steps: the model learns this video's motion, in T-Attn
   and in where ST-Attn's queries look, not the look of its objects, which keys and values still carry.
3. Edit (Sec. 4.3): invert the source with deterministic DDIM, z_T = DDIM-Inv(z_0) (run with the empty
   prompt, as the official code does), then sample with the edited prompt P* and classifier-free guidance,

       V* = D(DDIM-Samp(z_T, c*)),   eps_hat = eps(z_t, t, "") + w (eps(z_t, t, c*) - eps(z_t, t, ""))

   The inverted noise carries the source's layout and motion into the edit; starting from fresh
   noise instead (``inversion=False``) keeps only what the tuned weights remember.

Tuning runs through the course's training loop (``minivdm.train``: seeded, resumable checkpoints, a
progress bar, fp16 on a GPU via accelerate). Time conventions: a toy-world model reads continuous
t in [0, 1] scaled to [0, 1000]; a published one reads integer timesteps (``integer_timesteps=True``:
t is drawn on the schedule's grid).
"""

from __future__ import annotations

from pathlib import Path

import torch

from minivdm.diffusion import ddim_invert, diffusion_loss, guided_model, sample
from minivdm.diffusion.schedules import NoiseSchedule
from minivdm.models.tune_a_video_unet import TuneAVideoUNet, select_trainable
from minivdm.train import TrainConfig, TrainResult, train
from minivdm.validation import check_tensor, check_video

MIN_FRAMES = 2  # ST-Attn and T-Attn need a frame before the current one
# the official recipe (configs/*.yaml of showlab/Tune-A-Video): 500 steps, constant 3e-5, no warmup, batch 1
OFFICIAL_TUNING = TrainConfig(steps=500, learning_rate=3e-5, warmup_steps=0, ema_decay=0.0, seed=33,
                              checkpoint_every=100, log_every=10)


def check_source_video(video: torch.Tensor, name: str = "video") -> torch.Tensor:
    """One video (1, C, T, H, W) with T >= 2 frames, finite."""
    check_video(video, name)
    if video.shape[0] != 1:
        raise ValueError(f"{name} must be ONE video (1, C, T, H, W): Tune-A-Video tunes on a single clip, got "
                         f"{tuple(video.shape)}")
    if video.shape[2] < MIN_FRAMES:
        raise ValueError(f"{name} must have at least {MIN_FRAMES} frames (T, dim 2) for the temporal layers to "
                         f"learn anything, got {tuple(video.shape)}")
    if not torch.isfinite(video).all():
        raise ValueError(f"{name} holds NaN or inf values")
    return video


def check_prompt(prompt, name: str = "prompt") -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"{name} must be a str, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError(f"{name} is empty: Tune-A-Video tunes on (video, caption) and edits by a new caption")
    return prompt


def unet_time(unet: TuneAVideoUNet, schedule: NoiseSchedule, integer_timesteps: bool):
    """``model(z_t, t, text)`` in continuous time t (B,) in [0, 1], as the samplers and the loss call it."""
    if integer_timesteps:
        def model(z_t, t, text):
            return unet(z_t, schedule.timestep_from_t(t.double().cpu()).to(z_t.device), text)
    else:
        def model(z_t, t, text):
            return unet(z_t, t * schedule.num_train_timesteps, text)
    return model


def tune_a_video(unet: TuneAVideoUNet, video: torch.Tensor, text: torch.Tensor, schedule: NoiseSchedule, *,
                 config: TrainConfig = OFFICIAL_TUNING, prediction_type: str = "eps", integer_timesteps: bool = True,
                 checkpoint_dir: str | Path | None = None, run_description: dict | None = None,
                 progress: bool = True, device: str = "cpu", mixed_precision: str = "no") -> TrainResult:
    """Tune ``unet`` (inflated) on one video's latents (1, C, T, h, w) and its caption's embedding (1, L, D).

    Only the paper's parameters train (``select_trainable``); everything else keeps its values bit for bit.
    Returns the training result; ``result.model`` is the tuned U-Net (the same object as ``unet``).
    """
    if not isinstance(unet, TuneAVideoUNet):
        raise TypeError(f"unet must be an inflated TuneAVideoUNet (inflate_for_tune_a_video), got {type(unet).__name__}")
    check_source_video(video, "video")
    check_tensor(text, "text", ndim=3, layout="(1, L, D), the caption's embedding", floating=True)
    if text.shape[0] != 1:
        raise ValueError(f"text must be the one caption's embedding (1, L, D), got {tuple(text.shape)}")
    select_trainable(unet)

    def next_batch(step: int, generator: torch.Generator):
        # the same clip every step (the official batch of 1); t and the noise drawn here, on the CPU generator
        # (the training loop moves the batch to the model's device)
        if integer_timesteps:
            k = torch.randint(schedule.num_train_timesteps, (1,), generator=generator)
            t = schedule.t_from_timestep(k).float()
        else:
            t = torch.rand(1, generator=generator)
        noise = torch.randn(video.shape, generator=generator, dtype=torch.float32)
        return video, text, t, noise

    def loss_fn(unet_being_tuned, batch, generator: torch.Generator) -> torch.Tensor:
        clip, caption, t, noise = batch
        tuned = unet_time(unet_being_tuned, schedule, integer_timesteps)
        return diffusion_loss(lambda z_t, times: tuned(z_t, times, caption), clip, schedule, prediction_type,
                              t=t.to(clip.dtype), noise=noise.to(clip.dtype))

    described = {"recipe": "tune-a-video", "prediction_type": prediction_type,
                 "integer_timesteps": integer_timesteps, **(run_description or {})}
    return train(unet, next_batch, loss_fn, config, checkpoint_dir, run_description=described, progress=progress,
                 device=device, mixed_precision=mixed_precision)


@torch.no_grad()
def edit_video(unet: TuneAVideoUNet, source: torch.Tensor, text: torch.Tensor, null_text: torch.Tensor,
               schedule: NoiseSchedule, times: torch.Tensor, *, guidance_scale: float = 12.5,
               prediction_type: str = "eps", integer_timesteps: bool = True, inversion: bool = True,
               inversion_text: torch.Tensor | None = None, step_ends: torch.Tensor | None = None,
               generator: torch.Generator | None = None, progress: bool = True) -> torch.Tensor:
    """Edited videos (E, C, T, h, w), one per edited caption in ``text`` (E, L, D), from one source (1, C, T, h, w).

    ``inversion``: start from the source's DDIM inversion (run with ``inversion_text``, default the null
    caption, over ``times``), else from fresh noise. ``times`` (and ``step_ends``) are the sampler's grid,
    from the noisiest time down (``schedule.uniform_times`` or ``SamplerSettings.times_and_step_ends``).
    """
    if not isinstance(unet, TuneAVideoUNet):
        raise TypeError(f"unet must be an inflated TuneAVideoUNet, got {type(unet).__name__}")
    check_source_video(source, "source")
    check_tensor(text, "text", ndim=3, layout="(E, L, D), one embedding per edited caption", floating=True)
    check_tensor(null_text, "null_text", ndim=3, layout="(1, L, D), the empty caption's embedding", floating=True)
    edits = text.shape[0]
    model = unet_time(unet, schedule, integer_timesteps)
    if inversion:
        caption = null_text[:1] if inversion_text is None else inversion_text
        # the last evaluated time of the sampler's grid is where the source sits
        grid = times if step_ends is None else times[:-1]
        z_T = ddim_invert(lambda z, t: model(z, t, caption), source, schedule, grid,
                          prediction_type=prediction_type, progress=progress)
    else:
        z_T = torch.randn(source.shape, generator=generator, dtype=source.dtype).to(source.device)
    model_fn = guided_model(model, text, null_text[:1].expand(edits, -1, -1), guidance_scale)
    return sample(model_fn, z_T.expand(edits, -1, -1, -1, -1).contiguous(), schedule, times, step_ends=step_ends,
                  sampler="ddim", prediction_type=prediction_type, progress=progress)


# ------------------------------------------------------------------------------------------------
# Tuned weights: only what tuning changed, tied to the base model it was tuned from

TUNED_FORMAT = "minivdm-tune-a-video"
# frozen tensors whose values identify the base model (fp16-rounded, so a base loaded in half precision matches)
FINGERPRINT_TENSORS = ("conv_in.weight", "conv_out.weight", "time_embedding.linear_1.weight")


def base_fingerprint(unet: TuneAVideoUNet) -> str:
    """A hash of a few frozen tensors of the base model: tuned weights load only onto the base they were tuned from."""
    import hashlib

    state = unet.state_dict()
    digest = hashlib.sha256()
    for name in FINGERPRINT_TENSORS:
        digest.update(state[name].detach().to("cpu", torch.float16).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_tuned_weights(unet: TuneAVideoUNet, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """The tuned parameters only (T-Attn, W^Q of ST-Attn and cross-attention) as safetensors, with the base
    model's fingerprint and config: 8% of the U-Net (SD 1.4: 74.35 M of 909.12 M parameters)."""
    import json

    from minivdm.io.checkpoints import write_safetensors
    from minivdm.models.tune_a_video_unet import tuned_parameter_names

    names = set(tuned_parameter_names(unet))
    state = {name: parameter for name, parameter in unet.named_parameters() if name in names}
    metadata = {**(metadata or {}), "format": TUNED_FORMAT, "base_fingerprint": base_fingerprint(unet),
                "base_config": json.dumps(unet.config.to_diffusers(), sort_keys=True),
                "sparse_causal": str(unet.sparse_causal)}
    return write_safetensors(path, state, metadata)


def load_tuned_weights(unet: TuneAVideoUNet, path: str | Path, *, check_base: bool = True) -> TuneAVideoUNet:
    """Copy saved tuned weights into ``unet`` (inflated from the same base): every name and shape checked, and
    the base's fingerprint, so weights tuned from another model are refused by name, not silently mixed."""
    import json

    from minivdm.io.checkpoints import load_into, read_safetensors, read_safetensors_metadata
    from minivdm.models.tune_a_video_unet import tuned_parameter_names

    path = Path(path)
    metadata = read_safetensors_metadata(path)
    if metadata.get("format") != TUNED_FORMAT:
        raise ValueError(f"{path} is not a Tune-A-Video tuned-weights file written by minivdm (metadata format "
                         f"{metadata.get('format')!r}); a whole tuned U-Net folder loads with TuneAVideoUNet.from_pretrained")
    saved_config = json.loads(metadata.get("base_config", "{}"))
    if saved_config != json.loads(json.dumps(unet.config.to_diffusers(), sort_keys=True)):
        differences = sorted(key for key in saved_config.keys() | unet.config.to_diffusers().keys()
                             if saved_config.get(key) != unet.config.to_diffusers().get(key))
        raise ValueError(f"{path} was tuned from a U-Net of another architecture (it differs in {differences}): load "
                         f"it onto the base model it was tuned from")
    if check_base and metadata.get("base_fingerprint") != base_fingerprint(unet):
        raise ValueError(f"{path} was tuned from another base model (fingerprint {metadata.get('base_fingerprint')}, "
                         f"this U-Net's is {base_fingerprint(unet)}): its query projections and temporal layers belong "
                         f"to those weights. Load the base it was tuned from")
    state = read_safetensors(path)
    expected = set(tuned_parameter_names(unet))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(f"{path} does not hold exactly the tuned parameters: missing {missing[:5]}, unexpected "
                         f"{extra[:5]}")
    report = load_into(unet, state, strict=False)  # the rest of the U-Net is not in the file: that is the point
    if report.mismatched:
        raise ValueError(f"{path} holds tensors of other shapes than this U-Net's: {report.mismatched[:5]}")
    return unet
