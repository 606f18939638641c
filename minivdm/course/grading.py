"""Grade one submitted notebook: which checks pass, fail, were modified or never reached, and why.

The notebook that runs is the submission with its check cells set to the released exercise's source
(``check_cells``); it runs in its own temporary working copy, in a fresh limited kernel
(``notebook_run``). Every outcome becomes rows of the gradebook: one per check of the exercise, plus one
"notebook" row for anything that happened to the notebook as a whole (it ran past its time, its kernel
died, it printed too much, it tried the network, ran out of memory, was unreadable, was another
exercise, rebinds what its checks rely on). Messages name cells as Jupyter users see them: ``cell 7 (starts `while True:`)``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from minivdm.course.check_cells import (CheckInSubmission, ReleasedExercise, exercise_of, find_checks,
                                        with_released_checks)
from minivdm.course.notebook_run import CellOutcome, Limits, NotebookRun, run_notebook
from minivdm.course.submissions import Submission
from minivdm.course.tampering import rebindings

NOTEBOOK = "notebook"  # the `check` of a row about the whole notebook
CHECK_STATUSES = ("passed", "failed", "modified", "not reached", "not graded")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class Row:
    student: str
    exercise: str
    check: str    # "check 1", "check 2", ... or "notebook"
    title: str
    status: str
    message: str
    file: str     # the submission, relative to the submissions folder ("" when there is none)


def _clean(text: str, workdir: Path | None = None) -> str:
    text = _ANSI.sub("", text)
    if workdir is not None:  # a temporary path would make the gradebook differ from run to run
        text = text.replace(str(workdir), "<working copy>")
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + " [...]"


def _cell_name(notebook: nbformat.NotebookNode, index: int) -> str:
    first_line = next((line.strip() for line in notebook.cells[index].source.splitlines() if line.strip()), "")
    if len(first_line) > 50:
        first_line = first_line[:47] + "..."
    return f"cell {index + 1} (starts `{first_line}`)"


def check_label(number: int) -> str:
    return f"check {number}"


def rows_for_every_check(submission: Submission | None, student: str, exercise: ReleasedExercise, status: str,
                         message: str) -> list[Row]:
    file = submission.relative_path if submission else ""
    return [Row(student, exercise.name, check_label(check.number), check.title, status, message, file)
            for check in exercise.checks]


def read_notebook(content: bytes) -> nbformat.NotebookNode:
    """The submission as a notebook, or ValueError saying why it is not one."""
    try:
        notebook = nbformat.reads(content.decode("utf-8"), as_version=4)
    except UnicodeDecodeError as error:
        raise ValueError(f"not a text file (UTF-8): {error}") from None
    except Exception as error:  # nbformat raises NotJSONError, ValueError, KeyError, ... for a broken file
        raise ValueError(f"not a readable notebook ({type(error).__name__}: {error})") from None
    cells = notebook.get("cells")
    if not isinstance(cells, list) or any(not isinstance(cell, dict) or "cell_type" not in cell
                                          or not isinstance(cell.get("source", ""), str) for cell in cells):
        raise ValueError("not a readable notebook: it has no list of cells with a type and a source")
    return notebook


def identify(submission: Submission, notebook: nbformat.NotebookNode,
             exercises: dict[str, ReleasedExercise]) -> tuple[str | None, str]:
    """(the exercise to grade the notebook as, or None; the problem when it cannot be graded as that)."""
    held = exercise_of(notebook, exercises)
    named = submission.named_exercise
    if named is None:
        if held is None:
            return None, (f"cannot tell which exercise this is: its name names none ({', '.join(exercises)}) "
                          f"and it holds none of their check cells")
        return held, ""
    if held is not None and held != named and not any(
            found.state == "same" for found in find_checks(notebook, exercises[named])):
        return named, (f"this notebook holds the check cells of {held}, but was handed in as {named}: "
                       f"hand in each exercise under its own name")
    return named, ""


def _check_row(student: str, exercise: ReleasedExercise, submission: Submission, item: CheckInSubmission,
               graded: nbformat.NotebookNode, run: NotebookRun, limits: Limits, workdir: Path) -> Row:
    def row(status, message):
        return Row(student, exercise.name, check_label(item.check.number), item.check.title, status,
                   _clean(message, workdir), submission.relative_path)

    if item.state == "deleted":
        return row("modified", f"check cell deleted: check {item.check.number} is not in this notebook, so it cannot "
                               f"count. Copy the cell back from the released exercise and run it.")
    outcome = run.outcomes.get(item.cell_index, CellOutcome("not run"))
    if item.state == "edited":
        result = {"ok": "passed", "error": f"failed ({outcome.evalue})"}.get(outcome.status, "did not run")
        return row("modified", f"check cell modified: cell {item.cell_index + 1} differs from the released "
                               f"check {item.check.number}, so it cannot count. Restore it from the released exercise. (With the released "
                               f"check, your answer {result}.)")
    if outcome.status == "ok":
        return row("passed", "")
    if outcome.status == "error":
        if outcome.ename == "CheckFailed":
            return row("failed", outcome.evalue)
        message = f"{outcome.ename}: {outcome.evalue}"
        earlier = [(index, ename, evalue) for index, ename, evalue in run.errors if index < item.cell_index]
        if earlier:
            index, ename, evalue = earlier[0]
            message += (f" (an earlier cell failed first: {_cell_name(graded, index)} raised {ename}: {evalue}; "
                        f"fix that one first)")
        return row("failed", message)
    if outcome.status == "timeout":
        return row("failed", f"this check was still running when the notebook reached its time limit of "
                             f"{limits.wall_time_s:g} s: does your code loop forever, or do far more work than needed?")
    if outcome.status == "kernel died":
        return row("failed", "the Python kernel died while this check ran (the process exited or crashed)")
    stopped_in = run.stopped_in_cell
    where = f" in {_cell_name(graded, stopped_in)}" if stopped_in is not None else ""
    reason = {"timeout": f"ran past its time limit of {limits.wall_time_s:g} s{where}",
              "kernel died": f"its kernel died{where}"}.get(run.stopped, run.stopped or "stopped")
    return row("not reached", f"not run: the notebook {reason} before this check")


def _notebook_rows(student: str, exercise: ReleasedExercise, submission: Submission, graded: nbformat.NotebookNode,
                   run: NotebookRun, limits: Limits, workdir: Path) -> list[Row]:
    def row(status, message):
        return Row(student, exercise.name, NOTEBOOK, "", status, _clean(message, workdir), submission.relative_path)

    rows = []
    where = _cell_name(graded, run.stopped_in_cell) if run.stopped_in_cell is not None else ""
    if run.stopped == "timeout":
        rows.append(row("timeout", f"the notebook ran past its time limit of {limits.wall_time_s:g} s in {where}; "
                                   f"the checks after it were not reached. Look for a loop that never ends."))
    elif run.stopped == "kernel died":
        rows.append(row("kernel died", f"the Python kernel died while running {where} (the process exited, "
                                       f"crashed, or was killed); the checks after it were not reached"))
    elif run.stopped:
        rows.append(row("not graded", f"the grader could not run the notebook: {run.stopped}"))
    memory = [(index, ename, evalue) for index, ename, evalue in run.errors
              if ename == "MemoryError" or "can't allocate memory" in evalue or "Cannot allocate memory" in evalue]
    if memory:
        index, ename, evalue = memory[0]
        rows.append(row("memory limit", f"{_cell_name(graded, index)} ran out of memory (limit "
                                        f"{limits.memory_bytes / (1 << 30):g} GiB): {ename}: {evalue}"))
    network = [(index, ename) for index, ename, evalue in run.errors
               if ename == "NetworkDisabled" or "the network is disabled while notebooks are graded" in evalue]
    if network:
        rows.append(row("network refused", f"{_cell_name(graded, network[0][0])} tried to use the network, which is "
                                           f"off while grading: an exercise needs nothing from the internet"))
    if run.dropped_output_bytes:
        rows.append(row("output truncated", f"the notebook printed more than {limits.output_bytes / (1 << 20):g} MiB; "
                                            f"{run.dropped_output_bytes / (1 << 20):.1f} MiB of output was dropped (the "
                                            f"checks are graded from the kernel's replies, not from what was printed)"))
    return rows


async def grade_submission(submission: Submission, exercises: dict[str, ReleasedExercise], limits: Limits,
                           scratch: Path) -> list[Row]:
    """Every row for one submitted notebook. Never raises for anything the notebook holds or does."""
    student, file = submission.student, submission.relative_path
    try:
        if submission.problem:
            raise ValueError(submission.problem)
        notebook = read_notebook(submission.content)
    except ValueError as error:
        name = submission.named_exercise
        if name is None:
            return [Row(student, Path(file).stem, NOTEBOOK, "", "unreadable", str(error), file)]
        return [Row(student, name, NOTEBOOK, "", "unreadable", f"{error}; nothing in it could be graded", file),
                *rows_for_every_check(submission, student, exercises[name], "not graded", "the notebook is unreadable")]
    name, problem = identify(submission, notebook, exercises)
    if name is None:
        return [Row(student, Path(file).stem, NOTEBOOK, "", "unknown exercise", problem, file)]
    exercise = exercises[name]
    if problem:
        return [Row(student, name, NOTEBOOK, "", "wrong exercise", problem, file),
                *rows_for_every_check(submission, student, exercise, "not graded", "handed in as another exercise")]
    found = find_checks(notebook, exercise)
    graded = with_released_checks(notebook, found)
    suspicious = rebindings(notebook, exercise.sources, exercise.protected)
    workdir = Path(tempfile.mkdtemp(prefix="minivdm-grade-", dir=scratch))
    try:
        nbformat.write(graded, workdir / Path(file).name)  # its folder holds a copy of it, as Jupyter's would
        if any(item.state != "deleted" for item in found):
            run = await run_notebook(graded, workdir, limits)
        else:
            run = NotebookRun(outcomes={})
        rows = [_check_row(student, exercise, submission, item, graded, run, limits, workdir) for item in found]
        rows += _notebook_rows(student, exercise, submission, graded, run, limits, workdir)
        if suspicious:
            lines = "; ".join(f"cell {item.cell_index + 1} line {item.line}: `{item.text}`" for item in suspicious[:5])
            rows.append(Row(student, exercise.name, NOTEBOOK, "", "check tampering",
                            f"this notebook rebinds what the checks compare against or check with ({lines}"
                            f"{'; ...' if len(suspicious) > 5 else ''}): its checks may pass for that reason alone. "
                            f"The grades stand until someone reads it.", file))
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

