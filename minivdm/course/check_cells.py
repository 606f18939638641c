"""The check cells of the released exercises, and where (if anywhere) a submission still has them.

A check cell is a code cell tagged ``check`` in a released exercise (exercises/NN_topic.ipynb). Grading
trusts only the released source: a submission's copy of a check is found by its cell id (JupyterLab
keeps ids), or else by its source (a copy that lost its id); a copy with the id but another source was
edited, and a check found neither way was deleted. Either way it is not a pass.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

CHECK_TAG = "check"


def normalized(source: str) -> str:
    """A cell's source without trailing spaces and blank lines at either end (editors add and drop them)."""
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


@dataclass(frozen=True)
class CheckCell:
    number: int   # 1, 2, ... in notebook order: "check 1"
    cell_id: str
    title: str    # the heading of the section it checks
    source: str


@dataclass(frozen=True)
class ReleasedExercise:
    name: str  # "01_diffusion_basics"
    checks: tuple[CheckCell, ...]
    sources: frozenset[str] = frozenset()    # every code cell as released (normalized)
    protected: frozenset[str] = frozenset()  # names it imports from minivdm: the checks' references and helpers

    @property
    def number(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def fingerprint(self) -> str:
        """Changes when any check changes: results graded against other checks are not reused."""
        text = "\n\0".join([*(f"{check.cell_id}\n{check.source}" for check in self.checks), *sorted(self.protected)])
        return hashlib.sha256(text.encode()).hexdigest()


def _heading(markdown: str) -> str | None:
    for line in markdown.splitlines():
        match = re.match(r"\s*#+\s+(.*\S)", line)
        if match:
            return match.group(1)
    return None


def released_exercise(path: Path) -> ReleasedExercise:
    notebook = nbformat.read(path, as_version=4)
    checks, title, under_title = [], "", 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and _heading(cell.source):
            title, under_title = _heading(cell.source), 0
        elif cell.cell_type == "code" and CHECK_TAG in cell.metadata.get("tags", []):
            under_title += 1
            if not cell.get("id"):
                raise ValueError(f"{path}: a check cell has no cell id (nbformat >= 4.5 notebooks have them)")
            checks.append(CheckCell(len(checks) + 1, cell.id, title + (f" ({under_title})" if under_title > 1 else ""),
                                    normalized(cell.source)))
    from minivdm.course.tampering import minivdm_imports

    sources = frozenset(normalized(cell.source) for cell in notebook.cells if cell.cell_type == "code")
    return ReleasedExercise(Path(path).stem, tuple(checks), sources, minivdm_imports(notebook.cells))


def released_exercises(folder: Path) -> dict[str, ReleasedExercise]:
    """Every exercise in ``folder`` that has check cells, by name."""
    exercises = {}
    for path in sorted(Path(folder).glob("*.ipynb")):
        exercise = released_exercise(path)
        if exercise.checks:
            exercises[exercise.name] = exercise
    if not exercises:
        raise FileNotFoundError(f"no released exercise with check cells (code cells tagged '{CHECK_TAG}') in {folder}")
    return exercises


@dataclass(frozen=True)
class CheckInSubmission:
    check: CheckCell
    state: str              # "same", "edited" or "deleted"
    cell_index: int | None  # where it is in the submission (None when deleted)


def find_checks(notebook: nbformat.NotebookNode, exercise: ReleasedExercise) -> list[CheckInSubmission]:
    by_id = {cell.get("id"): index for index, cell in enumerate(notebook.cells) if cell.get("id")}
    by_source: dict[str, int] = {}
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            by_source.setdefault(normalized(cell.source), index)
    found = []
    for check in exercise.checks:
        index = by_id.get(check.cell_id)
        if index is not None and notebook.cells[index].cell_type == "code" \
                and normalized(notebook.cells[index].source) == check.source:
            found.append(CheckInSubmission(check, "same", index))
        elif check.source in by_source:
            found.append(CheckInSubmission(check, "same", by_source[check.source]))
        elif index is not None and notebook.cells[index].cell_type == "code":
            found.append(CheckInSubmission(check, "edited", index))
        else:
            found.append(CheckInSubmission(check, "deleted", None))
    return found


def exercise_of(notebook: nbformat.NotebookNode, exercises: dict[str, ReleasedExercise]) -> str | None:
    """The exercise whose check cells this notebook holds most of (None when it holds none)."""
    counts = {name: sum(found.state == "same" for found in find_checks(notebook, exercise))
              for name, exercise in exercises.items()}
    best = max(sorted(counts), key=counts.__getitem__, default=None)  # ties: the first by name
    return best if best is not None and counts[best] > 0 else None


def with_released_checks(notebook: nbformat.NotebookNode, found: list[CheckInSubmission]) -> nbformat.NotebookNode:
    """The notebook to run: the submission with every check cell it has set to the released source."""
    graded = copy.deepcopy(notebook)
    for item in found:
        if item.cell_index is not None:
            graded.cells[item.cell_index].source = item.check.source
            graded.cells[item.cell_index].outputs = []
    return graded
