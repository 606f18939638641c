"""A learner's own copy of the course: the tutorials and exercises copied to a folder of their choice.

Working on a copy keeps the repository's notebooks clean (they are committed without outputs, and the
tests run them), and ``git pull`` never collides with a learner's answers. Copying never overwrites:
a notebook already in the folder is the learner's work and is kept as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent.parent
COURSE_FOLDERS = ("tutorials", "exercises")


def copy_course(destination: str | Path, *, with_solutions: bool = False) -> tuple[list[Path], list[Path]]:
    """Copy every notebook of tutorials/ and exercises/ (and solutions/) into ``destination``.

    Returns (copied, kept): the notebooks written, and those left alone because a file of that name was
    already there.
    """
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise NotADirectoryError(f"{destination} is a file; expected a folder to copy the course into")
    folders = COURSE_FOLDERS + (("solutions",) if with_solutions else ())
    sources = [REPOSITORY / folder for folder in folders]
    missing = [str(folder) for folder in sources if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(f"the course notebooks ship with the repository, not with the package: "
                                f"{missing} not found. Clone the repository and install it with `pip install -e .`")
    copied, kept = [], []
    for source_folder in sources:
        for notebook in sorted(source_folder.glob("*.ipynb")):
            target = destination / source_folder.name / notebook.name
            if target.exists():
                kept.append(target)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(notebook, target)
            copied.append(target)
    return copied, kept
