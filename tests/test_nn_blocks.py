"""Building blocks match diffusers' implementations key for key and number for number."""

import pytest
import torch
from diffusers.models.embeddings import TimestepEmbedding as DiffusersTimestepEmbedding
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.resnet import ResnetBlock2D as DiffusersResnetBlock2D

from minivdm.nn import ResnetBlock2D, TimestepEmbedding, timestep_embedding


@pytest.mark.parametrize("flip, shift", [(True, 0.0), (False, 1.0)])
def test_timestep_embedding_matches_diffusers(flip, shift):
    timesteps = torch.tensor([0, 1, 250, 999])
    ours = timestep_embedding(timesteps, 64, flip_sin_to_cos=flip, downscale_freq_shift=shift)
    theirs = get_timestep_embedding(timesteps, 64, flip_sin_to_cos=flip, downscale_freq_shift=shift)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_timestep_embedding_mlp_loads_diffusers_weights():
    theirs = DiffusersTimestepEmbedding(32, 128)
    ours = TimestepEmbedding(32, 128)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    features = torch.randn(3, 32)
    assert torch.allclose(ours(features), theirs(features), atol=1e-6)


@pytest.mark.parametrize("in_channels, out_channels", [(32, 32), (32, 64)])
def test_resnet_block_matches_diffusers(in_channels, out_channels):
    torch.manual_seed(0)
    theirs = DiffusersResnetBlock2D(in_channels=in_channels, out_channels=out_channels, temb_channels=48, groups=8, eps=1e-6).eval()
    ours = ResnetBlock2D(in_channels, out_channels, 48, groups=8, eps=1e-6).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x, temb = torch.randn(2, in_channels, 8, 8), torch.randn(2, 48)
    assert torch.allclose(ours(x, temb), theirs(x, temb), atol=1e-5)


def test_timestep_embedding_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(B,\)"):
        timestep_embedding(torch.zeros(2, 3), 64)
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(torch.zeros(2), 63)
