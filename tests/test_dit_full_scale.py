"""CogVideoX text-to-video (`minivdm generate --config cogvideox-2b | cogvideox-5b`) on tiny random checkpoints in the
published pipeline layout (T5 encoder and tokenizer, 3D VAE, transformer, scheduler), never downloaded.

* the schedule: CogVideoX's SNR shift (log-SNR lowered by log s at every timestep), then zero terminal SNR, read from
  the published scheduler configs, is diffusers' CogVideoXDDIMScheduler's / CogVideoXDPMScheduler's table and grid;
* DPM-Solver++(2M) SDE's first-order step is DDPM's ancestral step;
* parity: T5 + our VideoDiT + our DDIM (2B) or DPM-Solver++(2M) SDE (5B), guided (fixed or dynamic w), + diffusers'
  3D VAE reproduce diffusers' CogVideoXPipeline from the same seed: latents and frames within 1e-3 (measured ~5e-6);
  with 3D sincos (2B), rotary (5B, at a size other than the reference) and 2-frame patches with padding (1.5);
* the command writes the video our pipeline makes, with the folder's sampler; refuses bad input by name, before any
  weight is read.
"""

from __future__ import annotations

import json
import math
import shutil
import string

import pytest
import torch

from minivdm.__main__ import main
from minivdm.diffusion.scheduler_config import read_scheduler_config
from minivdm.methods.text_to_image import SamplerSettings
from minivdm.methods.text_to_video_dit import load_cogvideox_components, text_to_video_dit

TOLERANCE = 1e-3
PROMPTS = ["a red circle moves left", "blue"]
# the published scheduler configs (THUDM/CogVideoX-2b and -5b, scheduler/scheduler_config.json), key for key
COGVIDEOX_SCHEDULER = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
                       "clip_sample_range": 1.0, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
                       "rescale_betas_zero_snr": True, "sample_max_value": 1.0, "set_alpha_to_one": True,
                       "snr_shift_scale": 3.0, "steps_offset": 0, "timestep_spacing": "trailing",
                       "trained_betas": None}
SCHEDULERS = {"2b": "CogVideoXDDIMScheduler", "5b": "CogVideoXDPMScheduler"}


def published_scheduler(version: str):
    import diffusers

    class_name = SCHEDULERS[version]
    return getattr(diffusers, class_name)(**COGVIDEOX_SCHEDULER), {"_class_name": class_name, **COGVIDEOX_SCHEDULER}


# ------------------------------------------------------------------------------------------------
# The schedule and the solver


@pytest.mark.parametrize("version", ["2b", "5b"])
def test_published_scheduler_configs_read_as_diffusers_table_and_grid(version):
    scheduler, config = published_scheduler(version)
    settings = SamplerSettings.from_scheduler_config(config)
    theirs = scheduler.alphas_cumprod.double()
    ours = settings.schedule.alphas_cumprod.double()
    assert ours[-1] == 0 and theirs[-1] == 0  # zero terminal SNR: z_T is pure noise
    assert ((ours[:-1] / theirs[:-1]) - 1).abs().max() < 1e-6  # float64 table rounded once to float32
    assert settings.prediction_type == "v" and settings.timestep_spacing == "trailing"
    for steps in (4, 50):
        scheduler.set_timesteps(steps)
        times, _ = settings.times_and_step_ends(steps)
        assert torch.equal(settings.schedule.timestep_from_t(times[:-1]), scheduler.timesteps)


@pytest.mark.parametrize("class_name", sorted(SCHEDULERS.values()))
def test_every_cogvideox_scheduler_option_is_classified_and_defaults_are_theirs(class_name):
    import inspect

    import diffusers

    from minivdm.diffusion.scheduler_config import COGVIDEOX_DEFAULTS, COGVIDEOX_IRRELEVANT

    scheduler_class = getattr(diffusers, class_name)
    options = inspect.signature(scheduler_class.__init__).parameters
    assert set(options) - {"self"} == set(COGVIDEOX_DEFAULTS) | COGVIDEOX_IRRELEVANT
    assert all(options[key].default == value for key, value in COGVIDEOX_DEFAULTS.items())
    # a config listing every key as never set (as an in-memory one does) takes the class's own defaults
    scheduler = scheduler_class()
    settings = SamplerSettings.from_scheduler_config({"_class_name": class_name, **scheduler.config})
    assert ((settings.schedule.alphas_cumprod.double() / scheduler.alphas_cumprod) - 1).abs().max() < 1e-6
    assert settings.prediction_type == "eps" and settings.timestep_spacing == "leading"


def test_snr_shift_lowers_every_log_snr_by_log_s_before_the_rescale():
    from minivdm.diffusion.schedules import DiscreteSchedule

    base = DiscreteSchedule.from_beta_schedule("scaled_linear", 0.00085, 0.012)
    shifted = DiscreteSchedule.from_shifted_beta_schedule("scaled_linear", 0.00085, 0.012, 1000, False, 3.0)
    t = torch.linspace(0.001, 1, 1000, dtype=torch.float64)
    assert torch.allclose(shifted.log_snr(t) - base.log_snr(t), torch.full_like(t, -math.log(3.0)), atol=1e-4)
    # a DDIMScheduler has no such option: still refused by name there
    with pytest.raises(ValueError, match="snr_shift_scale=3.0, an option minivdm does not know"):
        read_scheduler_config({"_class_name": "DDIMScheduler", "snr_shift_scale": 3.0})
    for bad in (0, -1.0, "3"):
        with pytest.raises(ValueError, match="snr_shift_scale"):
            read_scheduler_config({"_class_name": "CogVideoXDDIMScheduler", "snr_shift_scale": bad})
    with pytest.raises(ValueError, match="thresholding=True"):
        read_scheduler_config({"_class_name": "CogVideoXDPMScheduler", "thresholding": True})


def test_first_order_dpm_solver_sde_step_is_ddpm_ancestral_step():
    from minivdm.diffusion.dpm_solver import dpm_solver_2m_sde_step
    from minivdm.diffusion.samplers import ddpm_step

    generator = torch.Generator().manual_seed(0)
    z_t, x_hat, noise = (torch.randn(2, 3, 4, 5, 5, generator=generator) for _ in range(3))
    alpha_t, alpha_s = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)
    sigma_t, sigma_s = (1 - alpha_t**2).sqrt(), (1 - alpha_s**2).sqrt()
    ours = dpm_solver_2m_sde_step(z_t, x_hat, alpha_t, sigma_t, alpha_s, sigma_s, noise)
    # x prediction: the posterior q(z_s | z_t, x = x_hat)
    ddpm = ddpm_step(z_t, x_hat, *(v.float() for v in (alpha_t, sigma_t, alpha_s, sigma_s)), "x0", noise)
    assert (ours - ddpm).abs().max() < 1e-5


# ------------------------------------------------------------------------------------------------
# Whole-pipeline parity


def tiny_t5():
    """A T5 tokenizer over single letters (built without sentencepiece) and a tiny random T5 encoder (width 32)."""
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    letters = [("\u2581", -1.0)] + [(c, -1.0) for c in string.ascii_lowercase]  # \u2581: T5's word start
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + letters
    tokenizer = T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=226)
    torch.manual_seed(0)
    encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                      relative_attention_num_buckets=8, dropout_rate=0.0,
                                      feed_forward_proj="gated-gelu")).eval()
    return tokenizer, encoder


def tiny_vae():
    """CogVideoX's 3D VAE with its 4 levels (8x in space, 4x in time) at 8 channels: 4 latent channels."""
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(1)
    return AutoencoderKLCogVideoX(block_out_channels=(8, 8, 8, 8), latent_channels=4, layers_per_block=1,
                                  norm_num_groups=2, temporal_compression_ratio=4,
                                  down_block_types=("CogVideoXDownBlock3D",) * 4,
                                  up_block_types=("CogVideoXUpBlock3D",) * 4).eval()


def tiny_transformer(rotary: bool, patch_size_t=None, seed: int = 2):
    """A 2-layer CogVideoX transformer (2 heads of 16) whose reference grid is 32x32 pixels (4x4 latents), every
    weight perturbed so that no zero-initialised layer hides a mistake."""
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    model = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=8,
        text_embed_dim=32, num_layers=2, sample_width=4, sample_height=4, sample_frames=9, patch_size=2,
        patch_size_t=patch_size_t, temporal_compression_ratio=4, max_text_seq_length=226,
        use_rotary_positional_embeddings=rotary).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


# name -> (transformer, scheduler, the call's size and guidance)
CASES = {
    "2b: 3D sincos, DDIM": (dict(rotary=False), "2b", dict(height=32, width=32)),
    "5b: rotary at 32x48, DPM-Solver++(2M) SDE, dynamic cfg": (dict(rotary=True), "5b",
                                                              dict(height=32, width=48, use_dynamic_cfg=True)),
    "1.5: rotary, 2-frame patches + padding, DDIM": (dict(rotary=True, patch_size_t=2), "2b",
                                                     dict(height=32, width=32)),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One CogVideoX pipeline folder per case (saved by CogVideoXPipeline.save_pretrained) and the pipelines."""
    from diffusers import CogVideoXPipeline

    root = tmp_path_factory.mktemp("cogvideox")
    tokenizer, text_encoder = tiny_t5()
    vae = tiny_vae()
    pipelines, folders = {}, {}
    for name, (transformer_options, version, _) in CASES.items():
        pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                 transformer=tiny_transformer(**transformer_options),
                                 scheduler=published_scheduler(version)[0])
        pipe.set_progress_bar_config(disable=True)
        folders[name] = root / name.split(":")[0]
        pipe.save_pretrained(folders[name], safe_serialization=True)
        pipelines[name] = pipe
    return {"pipelines": pipelines, "folders": folders, "root": root}


def diffusers_run(pipe, options, seed: int = 3, num_frames: int = 9, steps: int = 4):
    """diffusers' latents (B, T, C, h, w), without any padding frames, and frames (B, F, 3, H, W) in [0, 1]."""
    call = dict(num_frames=num_frames, num_inference_steps=steps, guidance_scale=6.0, **options)
    latents = pipe(PROMPTS, generator=torch.Generator().manual_seed(seed), output_type="latent", **call).frames
    frames = pipe(PROMPTS, generator=torch.Generator().manual_seed(seed), output_type="pt", **call).frames
    return latents, frames


def our_run(folder, options, seed: int = 3, num_frames: int = 9, steps: int = 4, output: str = "video"):
    transformer, vae, text_encoder, tokenizer, settings, solver = load_cogvideox_components(folder)
    return text_to_video_dit(transformer, vae, text_encoder, tokenizer, settings, PROMPTS, solver=solver,
                             num_frames=num_frames, num_steps=steps, guidance_scale=6.0, output=output,
                             generator=torch.Generator().manual_seed(seed), progress=False, **options)


@pytest.mark.parametrize("case", list(CASES))
def test_our_pipeline_reproduces_diffusers_cogvideox_pipeline(tiny, case):
    options = CASES[case][2]
    their_latents, their_frames = diffusers_run(tiny["pipelines"][case], options)
    our_latents = our_run(tiny["folders"][case], options, output="latents")
    our_video = our_run(tiny["folders"][case], options)
    # diffusers returns (B, T, C, h, w) latents (with CogVideoX 1.5's padding frames in front) and (B, F, C, H, W)
    # frames in [0, 1]; ours are (B, C, T, h, w) and (B, C, F, H, W) in [-1, 1]
    their_latents = their_latents.permute(0, 2, 1, 3, 4)[:, :, -our_latents.shape[2]:]
    assert our_latents.shape == (2, 4, 3, 4, options["width"] // 8) == their_latents.shape
    assert our_video.shape == (2, 3, 9, 32, options["width"])
    assert their_latents.abs().max() > 1  # a sample, not a near-zero prediction
    assert (our_latents - their_latents).abs().max() <= TOLERANCE
    assert ((our_video / 2 + 0.5) - their_frames.permute(0, 2, 1, 3, 4)).abs().max() <= TOLERANCE


def test_a_pipeline_folder_with_another_scheduler_or_vae_is_refused_by_name(tiny, tmp_path):
    folder = shutil.copytree(tiny["folders"]["2b: 3D sincos, DDIM"], tmp_path / "pipe")
    config_path = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "_class_name": "EulerDiscreteScheduler"}))
    with pytest.raises(ValueError, match="is a EulerDiscreteScheduler; minivdm samples CogVideoX with"):
        load_cogvideox_components(folder)
    config_path.write_text(json.dumps(config))
    vae_path = folder / "vae" / "config.json"
    vae_path.write_text(json.dumps({**json.loads(vae_path.read_text()), "_class_name": "AutoencoderKL"}))
    with pytest.raises(ValueError, match="decodes with the 3D AutoencoderKLCogVideoX"):
        load_cogvideox_components(folder)
    shutil.rmtree(folder / "tokenizer")
    with pytest.raises(FileNotFoundError, match="not a CogVideoX pipeline folder: it has no tokenizer/"):
        load_cogvideox_components(folder)


# ------------------------------------------------------------------------------------------------
# The command


@pytest.fixture
def recorded(monkeypatch):
    """Every video text_to_video_dit makes through the command, with its arguments."""
    import minivdm.methods.text_to_video_dit as module

    calls, real = [], module.text_to_video_dit

    def recording(*args, **kwargs):
        video = real(*args, **kwargs)
        calls.append({"args": args, "kwargs": kwargs, "video": video})
        return video

    monkeypatch.setattr(module, "text_to_video_dit", recording)
    return calls


def command(folder, out, config: str = "cogvideox-2b", *extra: str) -> list[str]:
    return ["generate", "--config", config, "--prompt", "a red circle", "--weights", str(folder), "--out", str(out),
            "--frames", "9", "--steps", "3", "--height", "32", "--width", "32", "--seed", "5", "--device", "cpu",
            "--no-config-check", *extra]


@pytest.mark.parametrize("config, case, extra, solver", [
    ("cogvideox-2b", "2b: 3D sincos, DDIM", (), "ddim"),
    ("cogvideox-5b", "5b: rotary at 32x48, DPM-Solver++(2M) SDE, dynamic cfg", ("--dynamic-cfg",),
     "dpm-solver++(2m)-sde"),
])
def test_generate_writes_the_video_our_pipeline_makes(tiny, tmp_path, recorded, capsys, config, case, extra, solver):
    from minivdm.io.video_files import read_video, write_video

    out = tmp_path / "video.mp4"
    assert main(command(tiny["folders"][case], out, config, *extra)) == 0
    assert capsys.readouterr().out.strip() == str(out)
    (call,) = recorded
    kwargs = call["kwargs"]
    assert (kwargs["solver"], kwargs["num_frames"], kwargs["num_steps"], kwargs["guidance_scale"],
            kwargs["use_dynamic_cfg"], kwargs["height"], kwargs["width"]) == (solver, 9, 3, 6.0, bool(extra), 32, 32)
    transformer, vae, text_encoder, tokenizer, settings, _ = load_cogvideox_components(tiny["folders"][case])
    expected = text_to_video_dit(transformer, vae, text_encoder, tokenizer, settings, ["a red circle"], progress=False,
                                 generator=torch.Generator().manual_seed(5),
                                 **{k: v for k, v in kwargs.items() if k not in ("generator", "progress")})
    assert (call["video"] - expected).abs().max() <= 1e-5
    written = read_video(out)
    assert written.shape == (3, 9, 32, 32)  # 9 frames of 32x32 in the file
    # exactly the encoding of our pipeline's video at CogVideoX's 8 fps (H.264 at 32x32 is lossy: ~0.07 from it)
    assert torch.equal(written, read_video(write_video(tmp_path / "expected.mp4", expected[0], fps=8)))
    assert (written - expected[0]).abs().mean() < 0.1


def test_generate_refuses_bad_input_by_name_before_loading(tiny, tmp_path, monkeypatch, capsys):
    import minivdm.methods.text_to_video_dit as module

    def must_not_load(*args, **kwargs):
        raise AssertionError("a checkpoint was loaded before the input was checked")

    monkeypatch.setattr(module, "load_cogvideox_components", must_not_load)
    folder = tiny["folders"]["2b: 3D sincos, DDIM"]

    def error_of(argv) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("minivdm generate: error: ")  # one line, no traceback
        return err

    def replaced(option: str, value: str) -> list[str]:
        argv = command(folder, tmp_path / "x.mp4")
        argv[argv.index(option) + 1] = value
        return argv

    assert "--frames must be 4k + 1" in error_of(replaced("--frames", "16"))
    assert "13 or 17, not 16" in error_of(replaced("--frames", "16"))
    assert "--height must be a positive multiple of 16" in error_of(replaced("--height", "40"))
    assert "--width must be a positive multiple of 16" in error_of(replaced("--width", "24"))
    assert "no folder there" in error_of(replaced("--weights", str(tmp_path / "missing")))
    assert "not a CogVideoX pipeline folder: it has no transformer/config.json" in error_of(
        replaced("--weights", str(tmp_path)))
    assert "must end in .mp4 or .gif" in error_of(replaced("--out", str(tmp_path / "x.png")))
    assert "the weights do not have the cogvideox-2b architecture" in error_of(command(folder, tmp_path / "x.mp4")[:-1])
    assert "latte-1's transformer loads" in error_of(replaced("--config", "latte-1"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    argv = command(folder, tmp_path / "x.mp4")
    del argv[argv.index("--weights"):argv.index("--weights") + 2]
    assert "never downloads" in error_of(argv)


@pytest.mark.parametrize("extra, message", [
    (("--bogus",), "unrecognized arguments: --bogus"),
    (("--method", "gen1"), "--method does not apply to --config cogvideox-2b"),
    (("--motion-adapter", "x"), "--motion-adapter does not apply to --config cogvideox-2b"),
    (("--controlnet", "depth"), "--controlnet belong to --method controlvideo"),
    (("--frames", "0"), "expected a positive whole number"),
])
def test_parser_refuses_unknown_and_misplaced_options(tiny, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        main(command(tiny["folders"]["2b: 3D sincos, DDIM"], tmp_path / "x.mp4", "cogvideox-2b", *extra))
    assert message in capsys.readouterr().err


def test_dynamic_cfg_belongs_to_cogvideox(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--config", "sd15", "--prompt", "x", "--out", str(tmp_path / "x.png"), "--dynamic-cfg"])
    assert "--dynamic-cfg belongs to the cogvideox configs" in capsys.readouterr().err
