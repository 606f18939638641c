"""Video files: exact uint8 <-> [-1, 1] maps, format round trips, atomic writes, layout errors."""

import logging
import os

import numpy as np
import pytest
import torch

from minivdm.io import encode_video, frames_to_video, read_video, to_rgb_batch, video_to_frames, write_video


def few_colour_frames(seed: int = 0, num_frames: int = 6, height: int = 16, width: int = 16,
                      num_colours: int = 12) -> np.ndarray:
    """Random uint8 frames (T, H, W, 3) drawn from a small palette: a GIF can hold them exactly."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(num_colours, 3), dtype=np.uint8)
    return palette[rng.integers(0, num_colours, size=(num_frames, height, width))]


def smooth_video(num_frames: int = 8, height: int = 32, width: int = 32) -> torch.Tensor:
    """A soft blob moving right over a colour gradient (C, T, H, W): what video codecs are built for."""
    t = torch.arange(num_frames).view(-1, 1, 1).float()
    y = torch.arange(height).view(1, -1, 1).float()
    x = torch.arange(width).view(1, 1, -1).float()
    blob = torch.exp(-((x - 8 - 2 * t) ** 2 + (y - height / 2) ** 2) / (2 * 5.0**2))
    red = -0.6 + 1.2 * blob
    green = (-0.5 + y / height).expand(num_frames, height, width)
    blue = (0.4 - 0.6 * x / width).expand(num_frames, height, width)
    return torch.stack([red, green, blue])


# --- tensor <-> uint8 frames ------------------------------------------------------------------------

def test_frames_to_video_is_the_exact_inverse_of_video_to_frames_on_every_uint8_value():
    levels = np.arange(256, dtype=np.uint8)
    frames = np.stack([levels, levels[::-1], np.roll(levels, 7)], axis=-1).reshape(4, 8, 8, 3)
    video = frames_to_video(frames)
    assert video.shape == (3, 4, 8, 8) and video.dtype == torch.float32
    assert video.min() == -1.0 and video.max() == 1.0
    np.testing.assert_array_equal(video_to_frames(video), frames)


def test_video_to_frames_clamps_to_minus_one_one_and_rounds_to_the_nearest_level():
    values = torch.tensor([-3.0, -1.0, -0.999, 0.0, 0.5, 1.0, 4.0])
    video = values.view(1, 1, 1, -1).expand(3, 1, 1, -1).contiguous()
    frames = video_to_frames(video)
    expected = np.round((np.clip(values.numpy(), -1, 1) + 1) * 127.5).astype(np.uint8)
    np.testing.assert_array_equal(frames[0, 0, :, 0], expected)
    assert frames[0, 0, 0, 0] == 0 and frames[0, 0, -1, 0] == 255


def test_video_to_frames_takes_a_batch_of_one_and_keeps_grey_as_one_channel():
    video = torch.rand(1, 3, 4, 6, 5) * 2 - 1
    np.testing.assert_array_equal(video_to_frames(video), video_to_frames(video[0]))
    grey = torch.rand(1, 4, 6, 5) * 2 - 1
    assert video_to_frames(grey).shape == (4, 6, 5, 1)
    rgb = to_rgb_batch(grey)
    assert rgb.shape == (1, 3, 4, 6, 5)
    assert torch.equal(rgb[0, 0], rgb[0, 2]) and torch.equal(rgb[0, 1], grey[0])


# --- GIF --------------------------------------------------------------------------------------------

def test_gif_round_trip_is_exact_for_few_colour_frames(tmp_path):
    frames = few_colour_frames()
    video = frames_to_video(frames)
    path = write_video(tmp_path / "clip.gif", video, fps=8)
    assert path == tmp_path / "clip.gif" and path.read_bytes()[:6] == b"GIF89a"
    assert torch.equal(read_video(path), video)


def test_gif_keeps_every_frame_of_a_still_or_stuttering_video(tmp_path):
    # Pillow stores a run of identical frames as one longer frame; read_video must undo that.
    frames = few_colour_frames(num_frames=7)
    frames[2] = frames[1]
    frames[3] = frames[1]
    stuttering = frames_to_video(frames)
    assert torch.equal(read_video(write_video(tmp_path / "stutter.gif", stuttering, fps=12)), stuttering)
    still = frames_to_video(np.repeat(frames[:1], 9, axis=0))
    assert torch.equal(read_video(write_video(tmp_path / "still.gif", still, fps=8)), still)


def test_gif_scale_is_nearest_neighbour_upscaling(tmp_path):
    frames = few_colour_frames(num_frames=3, height=5, width=7)
    back = video_to_frames(read_video(write_video(tmp_path / "big.gif", frames_to_video(frames), scale=3)))
    assert back.shape == (3, 15, 21, 3)
    np.testing.assert_array_equal(back, frames.repeat(3, axis=1).repeat(3, axis=2))


def test_gif_quantises_full_colour_frames_to_a_palette_but_stays_close(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    video = frames_to_video(frames)
    back = read_video(write_video(tmp_path / "noise.gif", video))
    assert back.shape == video.shape
    assert (back - video).abs().mean() < 0.1


def test_grey_video_is_written_as_grey_rgb(tmp_path):
    grey = frames_to_video(few_colour_frames(num_frames=3)[..., :1])
    back = read_video(write_video(tmp_path / "grey.gif", grey))
    assert torch.equal(back, grey.expand(3, -1, -1, -1))


# --- MP4 --------------------------------------------------------------------------------------------

def test_mp4_round_trip_of_a_smooth_video_is_close(tmp_path):
    video = smooth_video()
    path = write_video(tmp_path / "clip.mp4", video, fps=8)
    assert path.read_bytes()[4:8] == b"ftyp"  # an ISO media (mp4) file
    back = read_video(path)
    assert back.shape == video.shape and back.dtype == torch.float32
    assert (back - video).abs().mean() < 0.05


def test_mp4_scale_four_makes_frames_four_times_larger_and_still_matches(tmp_path):
    video = smooth_video(num_frames=5)
    back = read_video(write_video(tmp_path / "big.mp4", video, scale=4))
    assert back.shape == (3, 5, 128, 128)
    upscaled = video.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    assert (back - upscaled).abs().mean() < 0.05


def test_mp4_pads_odd_sizes_to_multiples_of_16_without_imageio_warnings(tmp_path, caplog):
    video = smooth_video(num_frames=4, height=20, width=12)
    with caplog.at_level(logging.WARNING):
        back = read_video(write_video(tmp_path / "odd.mp4", video))
    assert not [record for record in caplog.records if "macro_block" in record.getMessage()]
    assert back.shape == (3, 4, 32, 16)
    # The picture sits unscaled at the top left; the padding repeats the last row and column.
    assert (back[:, :, :20, :12] - video).abs().mean() < 0.05
    assert (back[:, :, 24:, :12] - video[:, :, -1:, :]).abs().mean() < 0.05


def test_encode_video_gives_the_bytes_of_the_file(tmp_path):
    video = frames_to_video(few_colour_frames(num_frames=3))
    gif = encode_video(video, format="gif", fps=5)
    assert gif == write_video(tmp_path / "a.gif", video, fps=5).read_bytes()
    assert encode_video(video, format="mp4")[4:8] == b"ftyp"


# --- writing safely ---------------------------------------------------------------------------------

def test_write_creates_parent_folders_and_leaves_no_temporary_files(tmp_path):
    video = frames_to_video(few_colour_frames(num_frames=2))
    write_video(tmp_path / "a" / "b" / "clip.gif", video)
    write_video(tmp_path / "a" / "b" / "clip.mp4", video)
    assert sorted(os.listdir(tmp_path / "a" / "b")) == ["clip.gif", "clip.mp4"]


@pytest.mark.parametrize("interruption", [OSError("disk full"), KeyboardInterrupt()])
def test_interrupted_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch, interruption):
    path = tmp_path / "clip.gif"
    old = frames_to_video(few_colour_frames(seed=1, num_frames=2))
    write_video(path, old)
    old_bytes = path.read_bytes()

    def fail(*args):
        raise interruption

    monkeypatch.setattr(os, "fsync", fail)  # the new bytes are written, but never made final
    with pytest.raises(type(interruption)):
        write_video(path, frames_to_video(few_colour_frames(seed=2, num_frames=4)))
    assert os.listdir(tmp_path) == ["clip.gif"]
    assert path.read_bytes() == old_bytes


# --- errors that teach the layout -------------------------------------------------------------------

def test_wrong_shapes_name_the_expected_layout(tmp_path):
    with pytest.raises(ValueError, match=r"video must be \(C, T, H, W\) or \(B, C, T, H, W\), got shape \(8, 32\)"):
        video_to_frames(torch.zeros(8, 32))
    with pytest.raises(ValueError, match=r"C=3 \(RGB\) or C=1 \(grey\).*got C=4"):
        write_video(tmp_path / "a.gif", torch.zeros(4, 2, 8, 8))
    with pytest.raises(ValueError, match=r"single video \(C, T, H, W\) here, got a batch of 2"):
        write_video(tmp_path / "a.gif", torch.zeros(2, 3, 2, 8, 8))
    with pytest.raises(ValueError, match=r"frames must be \(T, H, W, C\)"):
        frames_to_video(np.zeros((2, 8, 8), dtype=np.uint8))
    assert not list(tmp_path.iterdir())


def test_wrong_types_and_values_are_refused():
    with pytest.raises(TypeError, match=r"torch.Tensor \(C, T, H, W\) or \(B, C, T, H, W\)"):
        video_to_frames(np.zeros((3, 2, 8, 8)))
    with pytest.raises(TypeError, match="floating dtype"):
        video_to_frames(torch.zeros(3, 2, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"uint8 array \(T, H, W, C\)"):
        frames_to_video(np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="NaN"):
        video_to_frames(torch.full((3, 2, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="fps must be a positive int"):
        encode_video(torch.zeros(3, 2, 8, 8), fps=0)
    with pytest.raises(ValueError, match="scale must be a positive int"):
        encode_video(torch.zeros(3, 2, 8, 8), scale=0)


def test_unsupported_formats_name_the_supported_ones(tmp_path):
    with pytest.raises(ValueError, match=r"'\.avi'.*supported: \.mp4, \.gif"):
        write_video(tmp_path / "clip.avi", torch.zeros(3, 2, 8, 8))
    with pytest.raises(ValueError, match=r"supported: \.mp4, \.gif"):
        read_video(tmp_path / "clip")
    with pytest.raises(ValueError, match=r"supported: \.mp4, \.gif"):
        encode_video(torch.zeros(3, 2, 8, 8), format="webm")
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")


@pytest.mark.parametrize("damage", ["not_a_video", "truncated", "empty"])
def test_an_unreadable_video_says_why_without_ffmpegs_banner(tmp_path, damage):
    from minivdm.io.video_files import UnreadableVideoError
    from minivdm.io.video_stream import VideoStream

    path = tmp_path / "clip.mp4"
    whole = encode_video(torch.rand(3, 8, 32, 32) * 2 - 1)
    path.write_bytes({"not_a_video": b"hello" * 200, "truncated": whole[: len(whole) // 2], "empty": b""}[damage])
    for read in (read_video, lambda p: list(VideoStream(p))):
        with pytest.raises(UnreadableVideoError) as error:
            read(path)
        message = str(error.value)
        assert message.startswith(f"cannot decode {path} as a .mp4 video (") and "truncated, empty or not a video" in message
        assert "ffmpeg version" not in message and "configuration:" not in message and "\n" not in message


def test_a_folder_or_a_missing_file_is_named(tmp_path):
    from minivdm.io.video_stream import VideoStream

    (tmp_path / "clips.mp4").mkdir()
    for read in (read_video, VideoStream):
        with pytest.raises(IsADirectoryError, match="is a folder; expected a video file"):
            read(tmp_path / "clips.mp4")
        with pytest.raises(FileNotFoundError, match="no video file at"):
            read(tmp_path / "missing.mp4")
