"""Curating a folder of video files into a JSON-lines file: resumable, and robust to broken files.

``minivdm curate INPUT_DIR --out curated.jsonl`` walks INPUT_DIR (recursively, sorted) for .mp4, .webm
and .gif files and writes, per file, one line per clip (every score, keep, the filters it failed) and
then one line that closes the file:

    {"type": "clip", "source": "a/b.mp4", "start": 0, "end": 16, "motion": 1.9, ..., "keep": true, "failed": []}
    {"type": "file", "source": "a/b.mp4", "status": "done", "clips": 3, "frames": 52, "fps": 8.0}
    {"type": "file", "source": "c.mp4", "status": "error", "error": "OSError: Could not load meta information"}

A file's lines are written together, flushed and synced, only once the file is finished, so a run killed
at any point leaves whole files behind (at worst a torn last line). Running again reads what is there,
drops anything after the last closing line, and goes on with the files not yet closed: the result is the
file an uninterrupted run writes. A file that cannot be read is closed with status "error" and its
reason; the run goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from torch import Tensor
from tqdm.auto import tqdm

from minivdm.curation.clip_scores import ClipScorer
from minivdm.curation.pipeline import CurationConfig, curate_stream
from minivdm.io.atomic_files import write_atomically
from minivdm.io.video_stream import STREAM_SUFFIXES, VideoStream


def video_files(input_dir: str | os.PathLike) -> list[Path]:
    """Video files under ``input_dir`` (any depth), in a fixed order."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise NotADirectoryError(f"input_dir must be a folder of {', '.join(STREAM_SUFFIXES)} files, got {input_dir}")
    return sorted(path for path in input_dir.rglob("*")
                  if path.is_file() and path.suffix.lower() in STREAM_SUFFIXES and not path.name.startswith("."))


def _finished_lines(out: Path) -> tuple[list[str], set[str]]:
    """The lines of an earlier run up to its last closed file, and the sources it closed."""
    if not out.exists():
        return [], set()
    kept, pending, closed = [], [], set()
    for line in out.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            break  # a torn line from an interrupted write: nothing after it was committed
        pending.append(line)
        if entry.get("type") == "file":
            kept.extend(pending)
            pending = []
            closed.add(entry["source"])
    return kept, closed


def _write_lines(file, lines: list[str]) -> None:
    file.write("".join(line + "\n" for line in lines))
    file.flush()
    os.fsync(file.fileno())


def _error_text(error: BaseException) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


def curate_file(path: Path, source: str, *, scorer: ClipScorer | None = None,
                captioner: Callable[[Tensor], str] | None = None,
                config: CurationConfig = CurationConfig()) -> list[dict]:
    """The JSON entries of one file: its clips, then the line that closes it (status done or error)."""
    try:
        stream = VideoStream(path)
        frames = 0

        def open_frames():
            nonlocal frames
            frames = 0
            for frame in stream:
                frames += 1
                yield frame

        records = curate_stream(open_frames, stream.fps, source=source, scorer=scorer, captioner=captioner,
                                config=config)
    except Exception as error:  # a broken file must not end the run: report it and go on
        return [{"type": "file", "source": source, "status": "error", "error": _error_text(error)}]
    entries = [{"type": "clip", **record.as_json()} for record in records]
    entries.append({"type": "file", "source": source, "status": "done", "clips": len(records), "frames": frames,
                    "fps": round(stream.fps, 6), "kept": sum(record.keep for record in records)})
    return entries


def curate_folder(input_dir: str | os.PathLike, out: str | os.PathLike, *, scorer: ClipScorer | None = None,
                  captioner: Callable[[Tensor], str] | None = None, config: CurationConfig = CurationConfig(),
                  progress: bool = True, on_file_done: Callable[[str], None] | None = None) -> dict:
    """Curate every video under ``input_dir`` into ``out`` (JSON lines), resuming an earlier run.

    Returns counts: files seen, skipped (already done), done, errors, clips, kept clips (of this run).
    ``on_file_done(source)`` is called after each file's lines are on disk (tests interrupt runs with it).
    """
    input_dir, out = Path(input_dir), Path(out)
    files = video_files(input_dir)
    kept_lines, closed = _finished_lines(out)
    # Rewrite what is kept (drops a torn tail) under a temporary name, then swap it in atomically.
    def write_kept(temporary):
        with open(temporary, "w") as file:
            _write_lines(file, kept_lines)

    write_atomically(out, write_kept)

    counts = {"files": len(files), "skipped": 0, "done": 0, "errors": 0, "clips": 0, "kept": 0}
    with open(out, "a") as file:
        for path in tqdm(files, desc="curate", unit="file", disable=not progress):
            source = path.relative_to(input_dir).as_posix()
            if source in closed:
                counts["skipped"] += 1
                continue
            entries = curate_file(path, source, scorer=scorer, captioner=captioner, config=config)
            _write_lines(file, [json.dumps(entry, sort_keys=True) for entry in entries])
            closing = entries[-1]
            if closing["status"] == "error":
                counts["errors"] += 1
            else:
                counts["done"] += 1
                counts["clips"] += closing["clips"]
                counts["kept"] += closing["kept"]
            if on_file_done is not None:
                on_file_done(source)
    return counts


def load_captioner(name: str) -> Callable[[Tensor], str] | None:
    """'none', 'toy-oracle' (the toy world's oracle reads the key frames), or 'module:function'."""
    if name == "none":
        return None
    if name == "toy-oracle":
        from minivdm.toyworld import caption_video

        return caption_video
    module_name, _, function_name = name.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"captioner must be 'none', 'toy-oracle' or 'module:function', got {name!r}")
    import importlib

    captioner = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(captioner):
        raise ValueError(f"captioner {name!r}: {module_name} has no callable {function_name}")
    return captioner


def run_curate_command(args) -> str:
    """``minivdm curate``: build the scorer, captioner and thresholds from the options, run, summarise."""
    from dataclasses import replace

    from minivdm.curation.pipeline import toy_world_config

    scorer, config = None, CurationConfig()
    if args.clip == "toy":
        from minivdm.toy.clip import load_toy_clip_scorer

        scorer, config = load_toy_clip_scorer(), toy_world_config()
    elif args.clip != "none":
        from minivdm.curation.clip_scores import load_clip_scorer

        scorer = load_clip_scorer(args.clip, args.aesthetic_head)
    captioner = load_captioner(args.captioner)
    if captioner is None:
        config = replace(config, min_text_similarity=None)
    overrides = {"min_motion": args.min_motion, "max_text_area": args.max_text_area,
                 "min_aesthetic": args.min_aesthetic, "min_text_similarity": args.min_text_similarity}
    config = replace(config, **{name: value for name, value in overrides.items() if value is not None})
    counts = curate_folder(args.input_dir, args.out, scorer=scorer, captioner=captioner, config=config,
                           progress=not args.no_progress)
    return (f"{counts['files']} files: {counts['done']} curated, {counts['skipped']} already done, "
            f"{counts['errors']} unreadable; {counts['clips']} clips, {counts['kept']} kept -> {args.out}")
