"""The full-scale command path, run on CPU with a tiny checkpoint in the published folder layout."""

import imageio.v3 as iio
import pytest
import torch

from minivdm.__main__ import main
from minivdm.methods.text_to_image import load_components, text_to_image
from sd_fixtures import make_tiny_sd_pipeline


def test_generate_command_writes_the_image_our_pipeline_makes(tmp_path):
    make_tiny_sd_pipeline(tmp_path / "weights")
    out = tmp_path / "out" / "image.png"
    assert main(["generate", "--config", "sd15", "--prompt", "a red circle", "--weights", str(tmp_path / "weights"),
                 "--out", str(out), "--steps", "5", "--seed", "3", "--device", "cpu", "--no-config-check"]) == 0
    written = torch.from_numpy(iio.imread(out)).permute(2, 0, 1).float() / 255
    unet, vae, text_encoder, tokenizer, settings = load_components(tmp_path / "weights")
    expected = text_to_image(unet, vae, text_encoder, tokenizer, settings, ["a red circle"], num_steps=5,
                             generator=torch.Generator().manual_seed(3), progress=False)[0]
    assert (written - expected).abs().max() <= 1 / 255 + 1e-6


def test_generate_refuses_weights_of_another_architecture(tmp_path, capsys):
    make_tiny_sd_pipeline(tmp_path / "weights")
    assert main(["generate", "--config", "sd15", "--prompt", "x", "--weights", str(tmp_path / "weights"),
                 "--out", str(tmp_path / "x.png"), "--steps", "2", "--device", "cpu"]) == 2
    assert "minivdm generate: error: the weights do not have the sd15 architecture" in capsys.readouterr().err


def test_missing_weights_never_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["generate", "--config", "sd15", "--prompt", "x", "--out", str(tmp_path / "x.png"), "--device", "cpu"]) == 2
    assert "never downloads" in capsys.readouterr().err
    monkeypatch.setenv("MINIVDM_TRACEBACK", "1")  # the exception itself, for debugging
    with pytest.raises(FileNotFoundError, match="never downloads"):
        main(["generate", "--config", "sd15", "--prompt", "x", "--out", str(tmp_path / "x.png"), "--device", "cpu"])
    with pytest.raises(FileNotFoundError, match="not a diffusers pipeline folder"):
        load_components(tmp_path)
