"""VDM's factorised space-time U-Net: relative positions, joint video-image isolation, identity at init,
conditioning on log-SNR and text, input checks, and a training smoke test."""

from dataclasses import replace

import pytest
import torch
from einops import rearrange

from minivdm.configs.vdm import TINY_VDM
from minivdm.diffusion.losses import diffusion_loss
from minivdm.diffusion.schedules import CosineSchedule
from minivdm.models.unet_2d_condition import UNet2DConditionModel
from minivdm.models.vdm_unet import VDMUNet, VDMUNetConfig, angle_timestep
from minivdm.nn.relative_position import RelativeScalars, RelativeVectors, TemporalAttention, joint_video_image_mask

# smaller than TINY_VDM so every test runs in about a second on one CPU thread
TEST_CONFIG = VDMUNetConfig(name="test-vdm", channels=(16, 32), attention_levels=(True, True), heads=2, groups=4,
                            cross_attention_dim=8)
SHAPE = (2, 3, 6, 16, 16)  # (B, C, T, H, W)
TEXT_LENGTH = 5
RELATIVE_TABLES = ("bias_b.table", "key_offsets_a.table", "value_offsets_r.table")  # b, a and r of the equation


def _randomise_zero_initialised(module: torch.nn.Module, *, temporal: bool = True) -> None:
    """Random weights for the projections that start at zero (the video-only layers too unless ``temporal`` is
    False), so every path acts."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            is_temporal = ".temporal_attentions." in name and any(part in name for part in ("attention.to_out", *RELATIVE_TABLES, "modulation"))
            is_video_only = is_temporal or name.startswith("text_embedding.")
            if name.startswith("conv_out") or (temporal and is_video_only):
                parameter.normal_(0.0, 0.3)


def _model(seed: int = 0, *, temporal: bool = True) -> VDMUNet:
    torch.manual_seed(seed)
    model = VDMUNet(TEST_CONFIG).eval()
    _randomise_zero_initialised(model, temporal=temporal)
    return model


def _inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    z_t = torch.randn(*SHAPE, generator=generator)
    log_snr = torch.tensor([-2.0, 4.0])
    context = torch.randn(SHAPE[0], TEXT_LENGTH, TEST_CONFIG.cross_attention_dim, generator=generator)
    return z_t, log_snr, context


def _changed_frames(before: torch.Tensor, after: torch.Tensor) -> list[int]:
    """Indices t where any value of frame t differs (exact comparison)."""
    return [t for t in range(before.shape[2]) if not torch.equal(before[:, :, t], after[:, :, t])]


# --- relative positions ----------------------------------------------------------------------
def test_relative_bias_depends_only_on_distance_and_sees_direction():
    layer = RelativeScalars(heads=3, max_distance=4)
    with torch.no_grad():
        layer.table.normal_()
    bias = layer(num_frames=8)
    assert bias.shape == (3, 8, 8)
    assert torch.equal(bias[:, :-1, :-1], bias[:, 1:, 1:])  # bias[:, i, j] == bias[:, i+1, j+1]
    assert not torch.equal(bias[:, 0, 1], bias[:, 1, 0])  # +1 and -1 are different distances
    # distances beyond K share the edge scalar
    assert torch.equal(bias[:, 0, 5], bias[:, 0, 7]) and torch.equal(bias[:, 7, 0], bias[:, 4, 0])
    assert not torch.equal(bias[:, 0, 4], bias[:, 0, 3])


def _reverse_time(features: torch.Tensor, num_frames: int) -> torch.Tensor:
    clips = rearrange(features, "(b t) c h w -> b t c h w", t=num_frames)
    return rearrange(clips.flip(1), "b t c h w -> (b t) c h w")


@pytest.mark.parametrize("table", RELATIVE_TABLES)
def test_temporal_attention_is_time_reversal_equivariant_only_without_relative_positions(table):
    torch.manual_seed(0)
    layer = TemporalAttention(channels=8, heads=2, dim_head=4, max_distance=4)
    with torch.no_grad():
        layer.attention.to_out[0].weight.normal_()
    num_frames = 5
    x = torch.randn(2 * num_frames, 8, 3, 3)  # ((B T), C, H, W)

    # zero tables: attention over frames cannot tell the order, reversing the input reverses the output
    torch.testing.assert_close(layer(_reverse_time(x, num_frames), num_frames),
                               _reverse_time(layer(x, num_frames), num_frames))
    with torch.no_grad():
        layer.get_parameter(table).normal_(0.0, 2.0)
    difference = (layer(_reverse_time(x, num_frames), num_frames) - _reverse_time(layer(x, num_frames), num_frames)).abs().max()
    assert difference > 1e-2  # any of the asymmetric tables sees which way time runs


def test_value_offsets_tell_identical_frames_apart_and_biases_alone_cannot():
    torch.manual_seed(0)
    layer = TemporalAttention(channels=8, heads=2, dim_head=4, max_distance=4)
    with torch.no_grad():
        layer.attention.to_out[0].weight.normal_()
        layer.bias_b.table.normal_(0.0, 2.0)
    num_frames = 6
    x = torch.randn(2, 8, 3, 3).repeat_interleave(num_frames, dim=0)  # every frame of a clip the same

    def spread(out):  # largest difference between a frame's output and its clip's first frame
        clips = rearrange(out, "(b t) c h w -> b t c h w", t=num_frames)
        return (clips - clips[:, :1]).abs().max()

    # a weighted average of equal values is that value: a bias-only block gives every frame the same output
    assert spread(layer(x, num_frames)) < 1e-5
    with torch.no_grad():
        layer.value_offsets_r.table.normal_()
    assert spread(layer(x, num_frames)) > 1e-2  # out_i = v + sum_j A_ij r[d] depends on where frame i sits


def test_key_offsets_let_the_query_choose_the_direction_on_identical_frames():
    torch.manual_seed(0)
    layer = TemporalAttention(channels=8, heads=2, dim_head=4, max_distance=4)
    with torch.no_grad():
        layer.bias_b.table.normal_(0.0, 2.0)
    num_frames = 6
    frame = torch.randn(1, 8, 1, 1)
    # two clips whose frames are all alike (as at high noise) but whose content differs, as "left" / "right" would
    tokens = layer.norm(torch.cat([frame, -frame]).repeat_interleave(num_frames, dim=0).flatten(1))
    tokens = rearrange(tokens, "(b t) c -> b t c", t=num_frames)

    def forward_mass(weights):  # per clip: attention on later frames (j > i), summed over heads and queries
        return torch.triu(weights, diagonal=1).sum((1, 2, 3))

    # without key offsets a, q_i . k_j is the same for every j: the pattern is the bias's, whatever the content
    weights = layer.attention_weights(tokens, num_frames)
    torch.testing.assert_close(weights[0], weights[1])
    with torch.no_grad():
        layer.key_offsets_a.table.normal_(0.0, 2.0)
    weights = layer.attention_weights(tokens, num_frames)
    assert (weights[0] - weights[1]).abs().max() > 0.1  # q_i . a[d]: the content picks where to look
    assert (forward_mass(weights)[0] - forward_mass(weights)[1]).abs() > 0.1  # ... including forward or back in time


def test_relative_vectors_depend_only_on_distance():
    layer = RelativeVectors(heads=2, dim_head=3, max_distance=4)
    with torch.no_grad():
        layer.table.normal_()
    values = layer(num_frames=7)
    assert values.shape == (2, 7, 7, 3)
    assert torch.equal(values[:, :-1, :-1], values[:, 1:, 1:])
    assert torch.equal(values[:, 0, 5], values[:, 0, 6])  # clipped at K
    assert not torch.equal(values[:, 0, 1], values[:, 1, 0])


def test_joint_video_image_mask_layout():
    expected = torch.tensor([[1, 1, 1, 0, 0],
                             [1, 1, 1, 0, 0],
                             [1, 1, 1, 0, 0],
                             [0, 0, 0, 1, 0],
                             [0, 0, 0, 0, 1]], dtype=torch.bool)
    assert torch.equal(joint_video_image_mask(5, 2), expected)
    assert joint_video_image_mask(5, 0).all()


# --- joint video-image training: appended images are isolated ---------------------------------
def test_appended_images_are_isolated_from_video_and_each_other():
    model = _model()
    z_t, log_snr, context = _inputs()
    num_images = 2  # frames 0..3 are the video, frames 4 and 5 independent images
    image_frame, video_frame = SHAPE[2] - 2, 0
    with torch.no_grad():
        base = model(z_t, log_snr, context, num_images=num_images)

        changed_image = z_t.clone()
        changed_image[:, :, image_frame] += torch.randn_like(changed_image[:, :, image_frame])
        out = model(changed_image, log_snr, context, num_images=num_images)
        assert _changed_frames(base, out) == [image_frame]  # only the image itself

        changed_video = z_t.clone()
        changed_video[:, :, video_frame] += torch.randn_like(changed_video[:, :, video_frame])
        out = model(changed_video, log_snr, context, num_images=num_images)
        assert _changed_frames(base, out) == [0, 1, 2, 3]  # the whole video, neither image

        # each frame's own caption, pooled into its ResBlocks and read by its cross-attention, stays its own
        per_frame = context[:, None].repeat(1, SHAPE[2], 1, 1)
        other_caption = per_frame.clone()
        other_caption[:, image_frame] = torch.randn_like(other_caption[:, image_frame])
        base_per_frame = model(z_t, log_snr, per_frame, num_images=num_images)
        assert _changed_frames(base_per_frame, model(z_t, log_snr, other_caption, num_images=num_images)) == [image_frame]

        # without the mask the same change to frame 4 reaches every frame: the test above can fail
        base_unmasked = model(z_t, log_snr, context, num_images=0)
        out_unmasked = model(changed_image, log_snr, context, num_images=0)
        assert _changed_frames(base_unmasked, out_unmasked) == list(range(SHAPE[2]))


# --- factorised space-time: identity at init, mixing once trained -----------------------------
def test_model_at_init_is_the_per_frame_image_model():
    model = _model(temporal=False)  # temporal output projections still zero, as built
    z_t, log_snr, context = _inputs()
    with torch.no_grad():
        video_out = model(z_t, log_snr, context)
        for frame in range(SHAPE[2]):
            single = model(z_t[:, :, frame:frame + 1], log_snr, context)  # a 1-frame clip: no temporal mixing possible
            torch.testing.assert_close(video_out[:, :, frame:frame + 1], single, atol=1e-5, rtol=1e-5)
        changed = z_t.clone()
        changed[:, :, 0] += 1.0
        assert _changed_frames(video_out, model(changed, log_snr, context)) == [0]


def test_temporal_attention_mixes_frames():
    model = _model(temporal=True)
    z_t, log_snr, context = _inputs()
    changed = z_t.clone()
    changed[:, :, 0] += 1.0
    with torch.no_grad():
        last_frame_change = (model(changed, log_snr, context) - model(z_t, log_snr, context))[:, :, -1].abs().max()
    assert last_frame_change > 1e-4  # the first frame reaches the last one


# --- conditioning --------------------------------------------------------------------------
def test_log_snr_and_text_change_the_prediction():
    model = _model()
    z_t, log_snr, context = _inputs()
    with torch.no_grad():
        base = model(z_t, log_snr, context)
        assert (model(z_t, log_snr + 3.0, context) - base).abs().max() > 1e-3
        assert (model(z_t, log_snr, torch.randn_like(context)) - base).abs().max() > 1e-3
        # per-frame text (B, T, L, D) holding the same caption for every frame is the shared text
        per_frame = context[:, None].expand(-1, SHAPE[2], -1, -1)
        torch.testing.assert_close(model(z_t, log_snr, per_frame), base)
        # infinite log-SNR (clean data) is a valid input: the embedding works on a bounded angle
        assert torch.isfinite(model(z_t, torch.tensor([float("inf"), float("-inf")]), context)).all()


def test_pooled_text_reaches_every_frame_without_cross_attention():
    model = _model()
    with torch.no_grad():  # silence every cross-attention: the pooled text is the only way in for the caption
        for name, parameter in model.named_parameters():
            if ".attn2.to_out." in name:
                parameter.zero_()
    z_t, log_snr, context = _inputs()
    other = torch.randn_like(context)
    with torch.no_grad():
        assert _changed_frames(model(z_t, log_snr, context), model(z_t, log_snr, other)) == list(range(SHAPE[2]))
        torch.nn.init.zeros_(model.text_embedding.weight)  # W_c = 0, as built: the caption no longer matters
        torch.testing.assert_close(model(z_t, log_snr, context), model(z_t, log_snr, other))


def test_text_modulation_starts_as_the_plain_block_and_acts_on_each_frame_alone():
    torch.manual_seed(0)
    plain = TemporalAttention(channels=8, heads=2, dim_head=4, max_distance=4)
    with torch.no_grad():
        plain.attention.to_out[0].weight.normal_()
        plain.value_offsets_r.table.normal_()
    modulated = TemporalAttention(channels=8, heads=2, dim_head=4, max_distance=4, condition_dim=5)
    missing, unexpected = modulated.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["modulation.bias", "modulation.weight"] and not unexpected
    num_frames = 4
    x, condition = torch.randn(2 * num_frames, 8, 3, 3), torch.randn(2 * num_frames, 5)
    with torch.no_grad():
        torch.testing.assert_close(modulated(x, num_frames, condition=condition), plain(x, num_frames))  # zero at init
        modulated.modulation.weight.normal_()
        base = modulated(x, num_frames, num_images=1, condition=condition)
        # another caption for the first clip changes that clip only
        other = condition.clone()
        other[:num_frames] = torch.randn(num_frames, 5)
        out = modulated(x, num_frames, num_images=1, condition=other)
        assert (out[:num_frames] - base[:num_frames]).abs().min() > 0 and torch.equal(out[num_frames:], base[num_frames:])
        # another caption for the second clip's appended image (its last frame) changes that image only
        other = condition.clone()
        other[-1] = torch.randn(5)
        out = modulated(x, num_frames, num_images=1, condition=other)
        assert torch.equal(out[:-1], base[:-1]) and not torch.equal(out[-1], base[-1])
    with pytest.raises(ValueError, match=r"condition must be \(\(B T\), condition_dim\) = \(8, 5\)"):
        modulated(x, num_frames)
    with pytest.raises(ValueError, match=r"condition must be .* got \(2, 5\)"):
        modulated(x, num_frames, condition=condition[:2])
    with pytest.raises(ValueError, match="without condition_dim"):
        plain(x, num_frames, condition=condition)


def test_temporal_text_modulation_reads_the_caption_pooled_over_its_own_tokens():
    torch.manual_seed(0)
    model = VDMUNet(replace(TEST_CONFIG, temporal_text_modulation=True)).eval()
    _randomise_zero_initialised(model)
    seen = []
    model.mid_block.temporal_attentions[0].modulation.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    z_t, log_snr, context = _inputs()
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    with torch.no_grad():
        base = model(z_t, log_snr, context, context_mask=mask)
        expected = torch.stack([context[0, :3].mean(0), context[1].mean(0)]).repeat_interleave(SHAPE[2], dim=0)
        torch.testing.assert_close(seen[-1], expected)  # one vector per frame: its caption's mean over the mask
        padded = context.clone()
        padded[0, 3:] = torch.randn(2, TEST_CONFIG.cross_attention_dim)
        model(z_t, log_snr, padded, context_mask=mask)
        torch.testing.assert_close(seen[-1], expected)  # the padding does not reach the pooled text
        for layer in [m for m in model.modules() if isinstance(m, TemporalAttention)]:
            torch.nn.init.zeros_(layer.modulation.weight)
        assert (base - model(z_t, log_snr, context, context_mask=mask)).abs().max() > 1e-3  # the modulation acted
    with pytest.raises(ValueError, match=r"context_mask must be bool of shape \(2, 5\)"):
        model(z_t, log_snr, context, context_mask=mask[:, :4])


# --- input checks ----------------------------------------------------------------------------
@pytest.mark.parametrize("case, message", [
    ("image_not_video", r"z_t must be \(B, C, T, H, W\)"),
    ("wrong_channels", r"z_t must be \(B, C, T, H, W\) with C = 3"),
    ("odd_size", r"H and W divisible by 2\*\*1"),
    ("log_snr_shape", r"log_snr must be \(B,\)"),
    ("log_snr_batch", r"log_snr must be \(B,\) with one log-SNR per batch item"),
    ("context_dim", r"context must be \(B, L, D\) or \(B, T, L, D\)"),
    ("context_ndim", r"context must be \(B, L, D\) or \(B, T, L, D\)"),
    ("too_many_images", r"num_images must be an int in \[0, T\)"),
    ("negative_images", r"num_images must be an int in \[0, T\)"),
    ("dtype", r"z_t is torch.float64 but the model's weights are torch.float32"),
    ("context_dtype", r"context is torch.float16 but the model's weights are torch.float32"),
])
def test_bad_inputs_name_the_layout(case, message):
    model = VDMUNet(TEST_CONFIG)
    z_t, log_snr, context = _inputs()
    num_images = 0
    if case == "image_not_video":
        z_t = z_t[:, :, 0]
    elif case == "wrong_channels":
        z_t = z_t[:, :2]
    elif case == "odd_size":
        z_t = z_t[..., :15, :15]
    elif case == "log_snr_shape":
        log_snr = log_snr[:, None]
    elif case == "log_snr_batch":
        log_snr = log_snr[:1]
    elif case == "dtype":
        z_t = z_t.double()
    elif case == "context_dtype":
        context = context.half()
    elif case == "context_dim":
        context = context[..., :4]
    elif case == "context_ndim":
        context = context[0]
    elif case == "too_many_images":
        num_images = SHAPE[2]
    elif case == "negative_images":
        num_images = -1
    with pytest.raises(TypeError if "dtype" in case else ValueError, match=message):
        model(z_t, log_snr, context, num_images=num_images)


# --- size and training ---------------------------------------------------------------------
def test_tiny_config_size():
    assert TINY_VDM == VDMUNetConfig()  # the dataclass defaults are the toy-world config
    count = sum(parameter.numel() for parameter in VDMUNet(TINY_VDM).parameters())
    assert count == 1_840_071  # ~1.8 M: trains on a CPU
    temporal = sum(p.numel() for name, p in VDMUNet(TINY_VDM).named_parameters() if ".temporal_attentions." in name)
    # 7 blocks of LayerNorm (128), q, k, v (3 x 64 x 64), output (64 x 64 + 64), the relative bias b (4 heads x 31)
    # and the relative key and value offsets a and r (2 x 4 heads x 31 x 16)
    assert temporal == 7 * (128 + 3 * 64 * 64 + 64 * 64 + 64 + 4 * 31 + 2 * 4 * 31 * 16)
    image = sum(parameter.numel() for parameter in UNet2DConditionModel(TINY_VDM.image_unet_config()).parameters())
    pooled_text = 64 * 128 + 128  # W_c: the text's hidden size to the time embedding's width
    assert count == image + temporal + pooled_text  # the rest is exactly the toy text-to-image U-Net


# --- inflation: an image U-Net's weights become the spatial layers ---------------------------
def _image_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    image = UNet2DConditionModel(TEST_CONFIG.image_unet_config()).eval()
    with torch.no_grad():  # a trained model has no zero output layer
        image.conv_out.weight.normal_(0.0, 0.3)
    return image


def test_inflated_image_unet_predicts_what_the_image_model_does_on_every_frame():
    image = _image_unet()
    vdm = VDMUNet.from_image_unet(image, name="inflated").eval()
    assert vdm.config == replace(TEST_CONFIG, name="inflated")
    z_t, log_snr, context = _inputs()
    with torch.no_grad():
        video_out = vdm(z_t, log_snr, context, num_images=2)
        # the image model conditions on a timestep in [0, 1000]; VDM's scaled log-SNR is that number
        per_frame = torch.stack([image(z_t[:, :, k], angle_timestep(log_snr), context) for k in range(SHAPE[2])], dim=2)
    torch.testing.assert_close(video_out, per_frame, atol=1e-5, rtol=1e-5)
    assert per_frame.abs().mean() > 0.1  # a real prediction, not the zero of an untrained output layer
    # and every spatial weight was copied, not just most of them
    video_state = vdm.state_dict()
    for name, weight in image.state_dict().items():
        assert torch.equal(video_state[name], weight), name


def test_inflation_refuses_an_image_unet_without_a_video_counterpart():
    uneven_heads = replace(TEST_CONFIG.image_unet_config(), attention_head_dim=(2, 4))
    with pytest.raises(ValueError, match="one head count on every attention level"):
        VDMUNet.from_image_unet(UNet2DConditionModel(uneven_heads))
    depth_conditioned = replace(TEST_CONFIG.image_unet_config(), in_channels=4)
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        VDMUNet.from_image_unet(UNet2DConditionModel(depth_conditioned))


def test_v_prediction_loss_decreases_with_joint_video_image_batch():
    torch.manual_seed(0)
    model = VDMUNet(replace(TEST_CONFIG, channels=(8, 16), attention_levels=(False, True)))
    schedule = CosineSchedule()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 8, 8, generator=generator) * 2 - 1
    noise = torch.randn(x.shape, generator=generator)
    t = torch.tensor([0.3, 0.7])
    context = torch.randn(2, 3, TEST_CONFIG.cross_attention_dim, generator=generator)

    def model_fn(z_t, t):
        return model(z_t, schedule.log_snr(t), context, num_images=1)

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = diffusion_loss(model_fn, x, schedule, "v", t=t, noise=noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
