"""Exercises are generated from solutions, never edited by hand.

In a solution notebook an answer is a region of a code cell between two marker lines:

    ### BEGIN SOLUTION
    return alpha * eps - sigma * x0
    ### END SOLUTION

The exercise twin replaces the region (at the same indentation) with

    # YOUR CODE HERE
    raise NotImplementedError("...")

and drops all outputs. ``python -m minivdm make-exercises`` rewrites exercises/ from solutions/;
``--check`` (and the test suite) report any exercise that differs from what would be generated.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
REPO_ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS_DIR, EXERCISES_DIR = REPO_ROOT / "solutions", REPO_ROOT / "exercises"


def strip_solution_regions(source: str) -> str:
    """Replace every marked answer region in one cell's source by a stub."""
    lines, out, inside = source.split("\n"), [], False
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"line {number}: {BEGIN} inside another answer region")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [f"{indent}# YOUR CODE HERE", f'{indent}raise NotImplementedError("write this part, then run the check below")']
        elif stripped == END:
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"an answer region has {BEGIN} but no {END}")
    return "\n".join(out)


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise twin of a solution notebook: answers stubbed, outputs cleared."""
    exercise = copy.deepcopy(solution)
    for cell in exercise.cells:
        if cell.cell_type == "code":
            cell.source = strip_solution_regions(cell.source)
            cell.outputs = []
            cell.execution_count = None
    return exercise


def has_answer_regions(notebook: nbformat.NotebookNode) -> bool:
    return any(cell.cell_type == "code" and re.search(re.escape(BEGIN), cell.source) for cell in notebook.cells)


def sync_exercises(solutions_dir: Path = SOLUTIONS_DIR, exercises_dir: Path = EXERCISES_DIR,
                   check_only: bool = False) -> list[Path]:
    """Write (or with ``check_only`` just list) every exercise that differs from its solution's twin."""
    stale = []
    for solution_path in sorted(Path(solutions_dir).glob("*.ipynb")):
        expected = nbformat.writes(make_exercise(nbformat.read(solution_path, as_version=4))) + "\n"
        exercise_path = Path(exercises_dir) / solution_path.name
        if exercise_path.exists() and exercise_path.read_text() == expected:
            continue
        stale.append(exercise_path)
        if not check_only:
            exercise_path.parent.mkdir(parents=True, exist_ok=True)
            exercise_path.write_text(expected)
    return stale
