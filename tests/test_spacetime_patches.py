"""Spacetime patches and positions: patchify is a lossless re-indexing, packing videos of different sizes into one
sequence changes nothing an attention computes (NaViT), rotary positions make q.k depend only on position differences,
and our position codes are diffusers' number for number."""

import pytest
import torch
from diffusers.models.embeddings import (
    apply_rotary_emb,
    get_2d_sincos_pos_embed,
    get_3d_rotary_pos_embed,
    get_3d_sincos_pos_embed,
)

from minivdm.nn.attention import Attention
from minivdm.nn.patches import grid_positions, pack, patchify, token_grid, unpack, unpatchify
from minivdm.nn.rotary import apply_rotary, rotary_3d, rotary_angles, rotary_identity, sincos_2d, sincos_3d

PATCHES = [(1, 1, 1), (1, 2, 2), (2, 4, 4), (3, 2, 1)]
SIZES = [(6, 8, 8), (12, 16, 4), (6, 4, 12)]  # (T, H, W): every size above divides them


def _name(sizes) -> str:
    return "x".join(map(str, sizes))


@pytest.mark.parametrize("patch", PATCHES, ids=_name)
@pytest.mark.parametrize("size", SIZES, ids=_name)
@pytest.mark.parametrize("channels_last", [False, True])
def test_unpatchify_inverts_patchify(patch, size, channels_last):
    video = torch.randn(2, 3, *size)
    tokens = patchify(video, patch, channels_last=channels_last)
    grid = token_grid(*size, patch)
    assert tokens.shape == (2, grid[0] * grid[1] * grid[2], 3 * patch[0] * patch[1] * patch[2])
    assert torch.equal(unpatchify(tokens, grid, patch, channels_last=channels_last), video)


@pytest.mark.parametrize("channels_last", [False, True])
def test_a_token_is_the_flattened_box_it_comes_from(channels_last):
    """tokens[b, (t' h' w'), (c i j k)] = x[b, c, t' p_t + i, h' p_h + j, w' p_w + k], checked value by value."""
    channels, (p_t, p_h, p_w) = 2, (2, 3, 2)
    video = torch.randn(1, channels, 4, 6, 4)
    tokens = patchify(video, (p_t, p_h, p_w), channels_last=channels_last)
    frames, rows, columns = token_grid(4, 6, 4, (p_t, p_h, p_w))
    positions = grid_positions((frames, rows, columns))
    for t_, h_, w_ in torch.cartesian_prod(torch.arange(frames), torch.arange(rows), torch.arange(columns)).tolist():
        token = (t_ * rows + h_) * columns + w_
        assert positions[token].tolist() == [t_, h_, w_]
        for c, i, j, k in torch.cartesian_prod(*(torch.arange(n) for n in (channels, p_t, p_h, p_w))).tolist():
            within = (((i * p_h + j) * p_w + k) * channels + c if channels_last
                      else ((c * p_t + i) * p_h + j) * p_w + k)
            assert tokens[0, token, within] == video[0, c, t_ * p_t + i, h_ * p_h + j, w_ * p_w + k]


@pytest.mark.parametrize("size, patch, axis", [((6, 7, 8), (1, 2, 2), "H = 7"), ((6, 8, 9), (1, 2, 2), "W = 9"),
                                               ((5, 8, 8), (2, 2, 2), "T \\(frames\\) = 5")], ids=["H", "W", "T"])
def test_sizes_the_patch_does_not_divide_are_refused(size, patch, axis):
    with pytest.raises(ValueError, match=f"{axis} is not a multiple of its patch size"):
        patchify(torch.randn(1, 3, *size), patch)


def test_bad_patches_and_token_counts_are_refused():
    with pytest.raises(ValueError, match=r"\(p_t, p_h, p_w\), three positive ints"):
        patchify(torch.randn(1, 3, 2, 4, 4), (2, 2))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        patchify(torch.randn(3, 2, 4, 4), (1, 2, 2))
    with pytest.raises(ValueError, match="grid .* has 8"):
        unpatchify(torch.randn(1, 6, 12), (2, 2, 2), (1, 2, 2))


VIDEOS = [(4, 8, 8), (2, 4, 12), (6, 4, 4)]  # (T, H, W): sizes and durations differ


def _videos(channels=3):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(channels, *size, generator=generator) for size in VIDEOS]


@pytest.mark.parametrize("patch", [(1, 2, 2), (2, 2, 4)], ids=_name)
@pytest.mark.parametrize("pad_to", [None, 128])
def test_unpack_inverts_pack(patch, pad_to):
    videos = _videos()
    packed = pack(videos, patch, pad_to=pad_to)
    counts = [torch.tensor(token_grid(*video.shape[1:], patch)).prod().item() for video in videos]
    assert packed.tokens.shape[0] == (pad_to or sum(counts))
    assert packed.segments.tolist()[:sum(counts)] == [i for i, count in enumerate(counts) for _ in range(count)]
    assert (packed.segments[sum(counts):] == -1).all()
    start = 0
    for count, grid in zip(counts, packed.grids):  # each token keeps its position in its own video
        assert torch.equal(packed.positions[start:start + count], grid_positions(grid))
        start += count
    for video, back in zip(videos, unpack(packed.tokens, packed)):
        assert torch.equal(back, video)


def test_pack_mask_is_block_diagonal():
    packed = pack(_videos(), (1, 2, 2), pad_to=128)
    mask = packed.attention_mask()
    bounds = [0]
    for grid in packed.grids:
        bounds.append(bounds[-1] + grid[0] * grid[1] * grid[2])
    bounds.append(128)  # the padding's own block
    expected = torch.zeros(128, 128, dtype=torch.bool)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        expected[start:stop, start:stop] = True
    assert torch.equal(mask, expected)


def test_packed_attention_equals_one_attention_per_video():
    """NaViT: one attention over the packed sequence (block-diagonal mask, rotary positions from each token's place in
    its own video) gives every video what attending over that video alone gives it."""
    torch.manual_seed(0)
    patch, heads, head_dim = (2, 2, 2), 2, 16
    embed = torch.nn.Linear(3 * 8, heads * head_dim)
    attention = Attention(heads * head_dim, heads, head_dim, bias=True, qk_norm=True).eval()
    videos = [torch.randn(3, 4, 8, 8), torch.randn(3, 2, 4, 12), torch.randn(3, 6, 4, 4)]
    packed = pack(videos, patch, pad_to=80)
    with torch.no_grad():
        together = attention(embed(packed.tokens)[None], mask=packed.attention_mask(),
                             rotary=rotary_3d(head_dim, packed.positions))[0]
        for index, video in enumerate(videos):
            frames, rows, columns = token_grid(*video.shape[1:], patch)
            axes = torch.meshgrid(torch.arange(frames), torch.arange(rows), torch.arange(columns), indexing="ij")
            positions = torch.stack(axes, dim=-1).reshape(-1, 3)  # (t', h', w') in token order, built here
            alone = attention(embed(patchify(video[None], patch)), rotary=rotary_3d(head_dim, positions))[0]
            torch.testing.assert_close(together[packed.segments == index], alone, atol=1e-5, rtol=1e-5)


def _dot_products(q, k, positions_q, positions_k, head_dim=32):
    q = apply_rotary(q, *rotary_3d(head_dim, positions_q))
    k = apply_rotary(k, *rotary_3d(head_dim, positions_k))
    return (q * k).sum(-1)


def test_rotary_dot_product_depends_only_on_position_difference():
    torch.manual_seed(0)
    q, k = torch.randn(2, 32, dtype=torch.float64), torch.randn(2, 32, dtype=torch.float64)
    p_q, p_k = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 5.0]]), torch.tensor([[1.0, 1.0, 4.0], [0.0, 2.0, 2.0]])
    reference = _dot_products(q, k, p_q, p_k)
    for shift in ([5.0, 0.0, 0.0], [0.0, 7.0, 0.0], [0.0, 0.0, 11.0], [3.0, -2.0, 4.0]):
        shift = torch.tensor(shift)
        torch.testing.assert_close(_dot_products(q, k, p_q + shift, p_k + shift), reference, atol=1e-5, rtol=1e-5)
    # <R(p) q, R(p') k> = <q, R(p' - p) k>
    torch.testing.assert_close(_dot_products(q, k, torch.zeros(2, 3), p_k - p_q), reference, atol=1e-5, rtol=1e-5)
    # and it does depend on the difference, along every axis
    for axis in range(3):
        moved = p_k.clone()
        moved[:, axis] += 1
        assert not torch.allclose(_dot_products(q, k, p_q, moved), reference, atol=1e-3)


def test_rotary_identity_changes_nothing_and_rotations_keep_norms():
    x = torch.randn(2, 4, 10, 32)
    assert torch.equal(apply_rotary(x, *rotary_identity(10, 32)), x)
    positions = torch.randint(0, 50, (10, 3)).float()
    rotated = apply_rotary(x, *rotary_3d(32, positions))
    pairs = lambda tensor: tensor.unflatten(-1, (-1, 2)).norm(dim=-1)  # noqa: E731  each rotated pair's length
    torch.testing.assert_close(pairs(rotated), pairs(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(rotated, x)


def test_rotary_angles_repeat_each_frequency_for_its_pair():
    angles = rotary_angles(8, torch.tensor([0.0, 1.0, 2.0]), theta=100.0)
    frequencies = 100.0 ** (-torch.arange(0, 8, 2) / 8)
    assert torch.allclose(angles[1], frequencies.repeat_interleave(2))
    assert torch.allclose(angles[2], 2 * angles[1])


@pytest.mark.parametrize("grid, base_size, scale", [((4, 4), 4, 1.0), ((3, 5), 8, 2.0), ((6, 2), 4, 1.0)])
def test_sincos_2d_matches_diffusers(grid, base_size, scale):
    dim, (height, width) = 48, grid
    theirs = get_2d_sincos_pos_embed(dim, grid, base_size=base_size, interpolation_scale=scale, output_type="pt")
    ours = sincos_2d(dim, torch.arange(height) / (height / base_size) / scale,
                     torch.arange(width) / (width / base_size) / scale)
    torch.testing.assert_close(ours, theirs.float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("grid, spatial_scale, temporal_scale", [((3, 4, 6), 1.875, 1.0), ((2, 5, 3), 1.0, 2.0)])
def test_sincos_3d_matches_diffusers(grid, spatial_scale, temporal_scale):
    dim, (frames, height, width) = 64, grid
    theirs = get_3d_sincos_pos_embed(dim, (width, height), frames, spatial_scale, temporal_scale, output_type="pt")
    ours = sincos_3d(dim, grid, spatial_scale=spatial_scale, temporal_scale=temporal_scale)
    torch.testing.assert_close(ours, theirs.flatten(0, 1).float(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("head_dim", [32, 64])
@pytest.mark.parametrize("grid", [(3, 4, 6), (2, 5, 3)])
def test_rotary_3d_matches_diffusers(head_dim, grid):
    frames, height, width = grid
    cos, sin = get_3d_rotary_pos_embed(head_dim, None, (height, width), frames, grid_type="slice",
                                       max_size=(height + 2, width + 1))
    ours = rotary_3d(head_dim, grid_positions(grid).float())
    torch.testing.assert_close(ours[0], cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours[1], sin, atol=1e-6, rtol=0)


def test_apply_rotary_matches_diffusers():
    x = torch.randn(2, 3, 24, 32)
    cos, sin = rotary_3d(32, grid_positions((2, 3, 4)).float())
    torch.testing.assert_close(apply_rotary(x, cos, sin), apply_rotary_emb(x, (cos, sin)), atol=1e-6, rtol=0)


def test_position_codes_refuse_bad_sizes():
    with pytest.raises(ValueError, match="head_dim must be a positive multiple of 16"):
        rotary_3d(24, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        rotary_3d(32, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"cos and sin must be \(N, d\)"):
        apply_rotary(torch.randn(1, 5, 32), *rotary_identity(4, 32))
