"""The chapter-1 denoiser: neutral at init, frame-wise on videos, checks its inputs."""

import pytest
import torch

from minivdm.models import PixelUNet, PixelUNetConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return PixelUNet(PixelUNetConfig(channels=(16, 32), groups=4)).eval()


def test_untrained_model_predicts_zero(model):
    out = model(torch.randn(2, 3, 16, 16), torch.rand(2))
    assert torch.equal(out, torch.zeros_like(out))


def test_output_depends_on_input_and_time_once_trained(model):
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)
    z = torch.randn(2, 3, 16, 16)
    a, b = model(z, torch.tensor([0.1, 0.1])), model(z, torch.tensor([0.9, 0.9]))
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, model(z + 0.5, torch.tensor([0.1, 0.1])))


def test_video_is_denoised_frame_by_frame(model):
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)
    video = torch.randn(2, 3, 4, 16, 16)
    t = torch.tensor([0.3, 0.7])
    out = model(video, t)
    for frame in range(4):
        assert torch.allclose(out[:, :, frame], model(video[:, :, frame], t), atol=1e-5)


def test_bad_inputs_name_the_expected_layout(model):
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) or \(B, C, T, H, W\)"):
        model(torch.randn(3, 16, 16), torch.rand(1))
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.randn(1, 4, 16, 16), torch.rand(1))
    with pytest.raises(ValueError, match="one time per batch item"):
        model(torch.randn(2, 3, 16, 16), torch.rand(3))
    with pytest.raises(TypeError, match="floating"):
        model(torch.randn(1, 3, 16, 16), torch.tensor([500]))
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.randn(1, 3, 15, 15), torch.rand(1))
    with pytest.raises(ValueError, match="t must be finite"):
        model(torch.randn(1, 3, 16, 16), torch.tensor([float("nan")]))
    with pytest.raises(TypeError, match="z_t is torch.float64 but the model's weights are torch.float32"):
        model(torch.randn(1, 3, 16, 16, dtype=torch.float64), torch.rand(1, dtype=torch.float64))
