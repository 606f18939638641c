"""Who handed in what: the notebooks in a folder of submissions, each with its student and exercise.

Two layouts, which may be mixed in one folder:

    SUBMISSIONS/alice/01_diffusion_basics.ipynb     one folder per student (notebooks anywhere inside it)
    SUBMISSIONS/bob__01_diffusion_basics.ipynb      flat: <student>__<exercise>.ipynb

A notebook's exercise is the released exercise its file name starts with (``01_diffusion_basics`` or just
its number ``01``: "01 v-param (1).ipynb" is exercise 01); a name that names none ("homework.ipynb")
is identified later by the check cells it holds. Hidden files and folders (``.ipynb_checkpoints``) and
files that are not notebooks are ignored. Nothing here writes to the folder.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

FLAT_SEPARATOR = "__"
MAX_NOTEBOOK_BYTES = 64 << 20  # an exercise notebook with its figures is well under 10 MiB


@dataclass(frozen=True)
class Submission:
    student: str
    path: Path            # the file
    relative_path: str    # the file, relative to the submissions folder (how rows and reports name it)
    content: bytes
    named_exercise: str | None  # the exercise its file name names, None when it names none
    problem: str = ""           # why its content could not be read ("" when it was)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def exercise_named_by(file_stem: str, exercise_names: list[str]) -> str | None:
    for name in exercise_names:
        if file_stem == name or file_stem.startswith(name):
            return name
    match = re.match(r"\s*(\d+)(?=\D|$)", file_stem)
    if match:
        by_number = [name for name in exercise_names if name.split("_", 1)[0] == match.group(1).zfill(2)]
        if len(by_number) == 1:
            return by_number[0]
    return None


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_submissions(folder: Path, exercise_names: list[str]) -> tuple[list[Submission], list[str]]:
    """Every notebook in ``folder`` with its student; and the notebooks whose student cannot be told
    (a notebook at the top level not named ``<student>__<exercise>.ipynb``), as relative paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of submissions")
    submissions, unnamed = [], []
    for path in sorted(folder.rglob("*.ipynb")):
        if _hidden(path, folder) or not path.is_file():
            continue
        relative = path.relative_to(folder)
        if len(relative.parts) == 1:
            student, separator, rest = path.stem.partition(FLAT_SEPARATOR)
            if not separator or not student.strip():
                unnamed.append(relative.as_posix())
                continue
            stem = rest
        else:
            student, stem = relative.parts[0], path.stem
        content, problem = b"", ""
        try:
            if path.stat().st_size > MAX_NOTEBOOK_BYTES:
                problem = f"the file is {path.stat().st_size / (1 << 20):.0f} MiB, more than any exercise notebook"
            else:
                content = path.read_bytes()
        except OSError as error:
            problem = f"the file could not be read ({type(error).__name__}: {error.strerror or error})"
        submissions.append(Submission(student.strip(), path, relative.as_posix(), content,
                                      exercise_named_by(stem, exercise_names), problem))
    return submissions, unnamed
