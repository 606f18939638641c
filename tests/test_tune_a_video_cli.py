"""`minivdm tune-a-video` on tiny checkpoints in the published folder layout: a random SD pipeline and a short video
file. The command must tune the inflated U-Net on the video's VAE latents, save exactly the tuned parameters, and
edit from the DDIM inversion of those latents; --tuned and --tuned-unet (the official layout) must give the same
edit without tuning. Bad input is refused by name before any checkpoint loads; nothing is downloaded."""

from __future__ import annotations

import json

import pytest
import torch

from minivdm.__main__ import main
from minivdm.io.video_files import read_video, write_video
from test_controlvideo_cli import moving_square_video  # a white square moving 2 px right per frame, 5 frames

FRAMES = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from sd_fixtures import make_tiny_sd_pipeline

    root = tmp_path_factory.mktemp("tune_a_video_cli")
    make_tiny_sd_pipeline(root / "sd", seed=0)
    make_tiny_sd_pipeline(root / "other_sd", seed=1)
    write_video(root / "square.gif", moving_square_video(), fps=4)
    return {"sd": root / "sd", "other_sd": root / "other_sd", "video": root / "square.gif", "root": root}


def command(tiny, out, *extra: str, weights: str = "sd") -> list[str]:
    return ["tune-a-video", "--config", "sd14", "--video", str(tiny["video"]), "--prompt", "a white square",
            "--edit", "a red square", "--weights", str(tiny[weights]), "--frames", str(FRAMES), "--tune-steps", "3",
            "--learning-rate", "1e-3", "--steps", "3", "--seed", "2", "--height", "16", "--width", "16",
            "--no-config-check", "--device", "cpu", "--format", "gif", "--out", str(out), *extra]


@pytest.fixture
def recorded(monkeypatch):
    """Every call of edit_video made through the command: its source latents and its result."""
    import minivdm.methods.tune_a_video as module

    calls = []
    real = module.edit_video

    def recording(unet, source, *args, **kwargs):
        result = real(unet, source, *args, **kwargs)
        calls.append({"source": source.clone(), "result": result.clone(), "kwargs": kwargs})
        return result

    monkeypatch.setattr(module, "edit_video", recording)
    return calls


def library_edit(tiny, tuned_file):
    """The edit of the command, recomputed with the library from the saved tuned weights."""
    from minivdm.full_scale_tune_a_video import encode_video
    from minivdm.methods.text_to_image import encode_prompts, load_components
    from minivdm.methods.tune_a_video import edit_video, load_tuned_weights
    from minivdm.models.tune_a_video_unet import TuneAVideoUNet

    unet, vae, text_encoder, tokenizer, settings = load_components(tiny["sd"], unet_class=TuneAVideoUNet)
    load_tuned_weights(unet, tuned_file)
    latents = encode_video(vae, read_video(tiny["video"])[None, :, :FRAMES])
    times, ends = settings.times_and_step_ends(3)
    edited = edit_video(unet.eval(), latents, encode_prompts(tokenizer, text_encoder, ["a red square"]),
                        encode_prompts(tokenizer, text_encoder, [""]), settings.schedule, times, step_ends=ends,
                        guidance_scale=12.5, prediction_type=settings.prediction_type, progress=False)
    return latents, edited


def test_tune_a_video_command_tunes_saves_and_edits(tiny, tmp_path, recorded):
    from minivdm.io.checkpoints import read_safetensors, read_safetensors_metadata

    out = tmp_path / "run"
    assert main(command(tiny, out)) == 0
    tuned_file = out / "tuned_unet.safetensors"
    saved = read_safetensors(tuned_file)
    assert saved and all(any(part in name for part in ("attn1.to_q", "attn2.to_q", "attn_temp")) for name in saved)
    metadata = read_safetensors_metadata(tuned_file)
    assert "tune-a-video" in metadata["command"] and metadata["prompt"] == "a white square"
    assert len(recorded) == 1
    latents, edited = library_edit(tiny, tuned_file)
    assert torch.equal(recorded[0]["source"], latents)  # the first 4 frames of the file, through the VAE
    torch.testing.assert_close(recorded[0]["result"], edited, rtol=0, atol=1e-5)
    # the tuning moved the weights: the untuned model edits differently
    from minivdm.methods.text_to_image import load_components
    from minivdm.models.tune_a_video_unet import TuneAVideoUNet

    untuned = load_components(tiny["sd"], unet_class=TuneAVideoUNet)[0]
    assert any(not torch.equal(untuned.get_parameter(name), tensor) for name, tensor in saved.items())
    video = read_video(out / "edit_0.gif")
    assert video.shape == (3, FRAMES, 16, 16)
    assert json.loads((out / "edits.json").read_text())["edits"] == ["a red square"]


def test_saved_tuned_weights_and_official_layout_give_the_same_edit(tiny, tmp_path, recorded):
    from minivdm.io.checkpoints import save_component
    from minivdm.methods.text_to_image import load_components
    from minivdm.methods.tune_a_video import load_tuned_weights
    from minivdm.models.tune_a_video_unet import TuneAVideoUNet, official_config

    first = tmp_path / "first"
    assert main(command(tiny, first)) == 0
    again = tmp_path / "again"
    assert main(command(tiny, again, "--tuned", str(first / "tuned_unet.safetensors"))) == 0
    assert not (again / "tuned_unet.safetensors").exists()  # nothing tuned
    assert torch.equal(recorded[0]["result"], recorded[1]["result"])
    # the tuned U-Net saved whole, in the official repository's layout, loads through --tuned-unet
    unet = load_components(tiny["sd"], unet_class=TuneAVideoUNet)[0]
    load_tuned_weights(unet, first / "tuned_unet.safetensors")
    save_component(unet, tmp_path / "official" / "unet", official_config(unet.config))
    assert main(command(tiny, tmp_path / "third", "--tuned-unet", str(tmp_path / "official"))) == 0
    torch.testing.assert_close(recorded[2]["result"], recorded[0]["result"], rtol=0, atol=1e-6)


def test_weights_tuned_from_another_base_are_refused(tiny, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(command(tiny, first)) == 0
    assert main(command(tiny, tmp_path / "other", "--tuned", str(first / "tuned_unet.safetensors"),
                        weights="other_sd")) == 2
    assert "another base model" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (("--config", "sd2-depth"), "must be one of"),
    (("--prompt", " "), "--prompt is empty"),
    (("--edit", ""), "--edit is empty"),
    (("--frames", "1"), "--frames must be >= 2"),
    (("--frames", "9"), "fewer than the 9 asked for"),
    (("--video", "missing.mp4"), "--video"),
    (("--tuned", "nothing.safetensors"), "--tuned nothing.safetensors: no such file"),
])
def test_bad_requests_are_refused_by_name(tiny, tmp_path, capsys, change, message):
    argv = command(tiny, tmp_path / "out")
    option, value = change
    if option in argv and option != "--edit":
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_two_fresh_runs_tune_the_same_weights(tiny, tmp_path):
    from minivdm.io.checkpoints import read_safetensors

    assert main(command(tiny, tmp_path / "a")) == 0
    assert main(command(tiny, tmp_path / "b")) == 0
    a, b = (read_safetensors(tmp_path / run / "tuned_unet.safetensors") for run in ("a", "b"))
    assert all(torch.equal(a[name], b[name]) for name in a)  # the temporal layers' init is seeded (--seed)
