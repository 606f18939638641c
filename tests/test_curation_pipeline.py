"""The curation pipeline and the folder run: clips found where they are, each filter drops its kind,
files streamed with bounded memory, broken files reported, interrupted runs resumed to the same output."""

import json
import weakref

import pytest
import torch

from minivdm.curation.folder_run import curate_folder, video_files
from minivdm.curation.pipeline import CurationConfig, curate_stream, curate_video
from minivdm.io.video_files import read_video, write_video
from minivdm.toyworld import caption_video
from minivdm.toyworld.footage import FOOTAGE_FPS, make_footage

EVERY_KIND = ("normal", "static", "text_overlay", "low_quality", "normal")


@pytest.fixture(scope="module")
def footage():
    return make_footage(1001, kinds=EVERY_KIND)


@pytest.fixture(scope="module")
def records(footage):
    return curate_video(footage.video, FOOTAGE_FPS, captioner=caption_video)


def test_clips_are_found_where_the_footage_has_them(footage, records):
    found = [(record.start, record.end) for record in records]
    assert len(found) == len(footage.clips), (found, footage.clips)
    for (start, end), clip in zip(found, footage.clips):
        assert abs(start - clip.start) <= 1 and abs(end - clip.end) <= 1, (found, footage.clips)


def test_each_filter_drops_its_kind_and_keeps_good_clips(footage, records):
    expected = {"normal": [], "static": ["motion"], "text_overlay": ["text"], "low_quality": []}
    for record, clip in zip(records, footage.clips):
        assert record.failed == expected[clip.kind], (clip.kind, record)
        assert record.keep == (not expected[clip.kind])
        assert record.caption == caption_video(footage.video[:, clip.start: clip.end][:, [0, 7, 15]])


def test_the_clip_scorer_drops_low_quality_and_miscaptioned_clips(footage):
    from minivdm.curation.pipeline import toy_world_config
    from minivdm.toy.clip import load_toy_clip_scorer

    scorer = load_toy_clip_scorer()
    config = toy_world_config()
    good = curate_video(footage.video, FOOTAGE_FPS, scorer=scorer, captioner=caption_video, config=config)
    low_quality = EVERY_KIND.index("low_quality")
    assert "aesthetic" in good[low_quality].failed, good[low_quality]
    assert good[0].keep and good[-1].keep, (good[0], good[-1])
    # a captioner that describes another scene: the CLIP similarity filter catches it
    wrong = curate_video(footage.video, FOOTAGE_FPS, scorer=scorer, captioner=lambda frames: "a yellow triangle moving up",
                         config=config)
    assert all("caption" in record.failed for record in wrong if "yellow" not in footage.clips[0].caption)


def test_the_scorer_is_required_for_its_filters(footage):
    config = CurationConfig(min_aesthetic=0.5)
    with pytest.raises(ValueError, match="ClipScorer"):
        curate_video(footage.video, FOOTAGE_FPS, config=config)


def test_bad_inputs_name_the_expected_layout(footage):
    with pytest.raises(ValueError, match=r"\(C, T, H, W\)"):
        curate_video(footage.video[None], FOOTAGE_FPS)
    with pytest.raises(ValueError, match="fps"):
        curate_video(footage.video, 0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        curate_stream(lambda: iter([torch.zeros(32, 32)]), FOOTAGE_FPS)


def test_the_second_pass_holds_only_the_frames_it_scores():
    """A long stream of 40 clips: at any time only a handful of its frames are alive."""
    long_footage = make_footage(7, n_clips=40, fade_frames=0)
    alive = weakref.WeakSet()
    most_alive = 0

    def open_frames():
        nonlocal most_alive
        for frame in long_footage.video.unbind(dim=1):
            frame = frame.clone()  # a fresh tensor per frame, as a decoder gives
            alive.add(frame)
            most_alive = max(most_alive, len(alive))
            yield frame

    records = curate_stream(open_frames, FOOTAGE_FPS)
    assert len(records) >= 38  # (the cut detector may split or join one or two of them)
    # one clip's 2-fps frames (16 frames at 8 fps -> 4) + its 3 key frames + the frame in hand
    assert most_alive <= 4 + 3 + 2, most_alive


def write_folder(folder, footages):
    for name, footage in footages.items():
        write_video(folder / name, footage.video, fps=FOOTAGE_FPS)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_folder(folder, {"a.mp4": make_footage(1, n_clips=2), "b.gif": make_footage(2, n_clips=2),
                          "nested/c.mp4": make_footage(3, n_clips=2), "d.mp4": make_footage(4, n_clips=2)})
    data = (folder / "d.mp4").read_bytes()
    (folder / "d.mp4").write_bytes(data[: len(data) // 2])                # truncated
    (folder / "e.mp4").write_bytes(b"this is not a video" * 20)           # garbage
    (folder / "notes.txt").write_text("not a video either")
    return folder


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_folder_run_writes_every_clip_and_reports_broken_files(video_folder, tmp_path):
    out = tmp_path / "curated.jsonl"
    counts = curate_folder(video_folder, out, progress=False)
    assert [p.relative_to(video_folder).as_posix() for p in video_files(video_folder)] == \
        ["a.mp4", "b.gif", "d.mp4", "e.mp4", "nested/c.mp4"]
    closing = {entry["source"]: entry for entry in lines(out) if entry["type"] == "file"}
    assert {source: entry["status"] for source, entry in closing.items()} == \
        {"a.mp4": "done", "b.gif": "done", "d.mp4": "error", "e.mp4": "error", "nested/c.mp4": "done"}
    assert closing["e.mp4"]["error"] and "\n" not in closing["e.mp4"]["error"]
    clips = [entry for entry in lines(out) if entry["type"] == "clip"]
    assert {entry["source"] for entry in clips} == {"a.mp4", "b.gif", "nested/c.mp4"}
    assert counts["errors"] == 2 and counts["done"] == 3 and counts["clips"] == len(clips)
    # the file run gives what the in-memory pipeline gives on the decoded video
    in_memory = curate_video(read_video(video_folder / "a.mp4"), FOOTAGE_FPS)
    from_file = [entry for entry in clips if entry["source"] == "a.mp4"]
    assert [(e["start"], e["end"], e["keep"]) for e in from_file] == [(r.start, r.end, r.keep) for r in in_memory]
    assert [e["motion"] for e in from_file] == [round(r.motion, 6) for r in in_memory]


def test_an_interrupted_run_resumes_to_the_same_output(video_folder, tmp_path):
    whole = tmp_path / "whole.jsonl"
    curate_folder(video_folder, whole, progress=False)

    resumed = tmp_path / "resumed.jsonl"

    def stop_after_two(source, done=[]):  # noqa: B006 - counts calls across the run
        done.append(source)
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        curate_folder(video_folder, resumed, progress=False, on_file_done=stop_after_two)
    # a torn line, as a kill in the middle of a write leaves
    with open(resumed, "a") as file:
        file.write('{"type": "clip", "source": "d.mp4", "sta')
    counts = curate_folder(video_folder, resumed, progress=False)
    assert counts["skipped"] == 2 and counts["done"] + counts["errors"] == 3
    assert resumed.read_bytes() == whole.read_bytes()
    # and a finished run is left as it is
    again = curate_folder(video_folder, resumed, progress=False)
    assert again["skipped"] == 5 and resumed.read_bytes() == whole.read_bytes()


def test_webm_files_are_read(tmp_path):
    import imageio.v3 as iio

    from minivdm.io.video_files import video_to_frames

    footage = make_footage(5, n_clips=2, fade_frames=0)
    iio.imwrite(tmp_path / "clip.webm", video_to_frames(footage.video), extension=".webm", plugin="FFMPEG",
                fps=FOOTAGE_FPS, codec="libvpx-vp9", macro_block_size=16)
    out = tmp_path / "out.jsonl"
    counts = curate_folder(tmp_path, out, progress=False)
    assert counts["done"] == 1 and counts["clips"] == 2, lines(out)


def test_the_curate_command_writes_what_curate_folder_writes(video_folder, tmp_path, capsys):
    from minivdm.__main__ import main

    direct = tmp_path / "direct.jsonl"
    curate_folder(video_folder, direct, progress=False)
    from_cli = tmp_path / "cli.jsonl"
    assert main(["curate", str(video_folder), "--out", str(from_cli), "--no-progress"]) == 0
    assert "5 files: 3 curated, 0 already done, 2 unreadable" in capsys.readouterr().out
    assert from_cli.read_bytes() == direct.read_bytes()

    captioned = tmp_path / "captioned.jsonl"
    assert main(["curate", str(video_folder), "--out", str(captioned), "--captioner", "toy-oracle",
                 "--min-motion", "1e9", "--no-progress"]) == 0
    clips = [entry for entry in lines(captioned) if entry["type"] == "clip"]
    assert all(entry["caption"] for entry in clips)
    assert all(entry["failed"][:1] == ["motion"] for entry in clips)  # the override reached the filter
    capsys.readouterr()
    assert main(["curate", str(video_folder), "--out", str(tmp_path / "x.jsonl"), "--captioner", "nonsense"]) == 2
    assert "module:function" in capsys.readouterr().err
