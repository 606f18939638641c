"""`minivdm grade`: a whole class's submissions to a gradebook, a summary and one report per student.

    gradebook.csv          one row per (student, exercise, check), plus "notebook" rows for what happened
                           to a notebook as a whole (timeout, kernel died, unreadable, missing, ...)
    gradebook.summary.csv  one row per student: checks passed / total, points / max points, per exercise
    gradebook.reports/     <student>.md: each exercise's checks, and every failed check's teaching message
    gradebook.graded.jsonl what is graded so far, one line per submission (the resume state)

Resumable: each graded submission is appended to the resume state as soon as it is done, with the hash of
its file, of the released checks and of the limits. A run that is stopped and started again grades only
what it lacks (or what changed) and writes the same gradebook. Submissions run in parallel (``jobs``),
each kernel with ``cpu_count // jobs`` threads.

The grader writes nothing into the submissions folder, and keeps it as it was: every file there is read
into memory first; after each notebook the folder is compared with that snapshot, a file a notebook
changed or deleted is put back, a new file is moved to ``gradebook.quarantine/``, and the notebook gets a
"changed submissions" row (when several notebooks ran at that moment, they are graded again one at a
time at the end, so the row names the right one).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from minivdm.course.check_cells import ReleasedExercise, released_exercises
from minivdm.course.exercises import EXERCISES_DIR
from minivdm.course.grade_reports import write_reports
from minivdm.course.grading import NOTEBOOK, Row, check_label, grade_submission, rows_for_every_check
from minivdm.course.notebook_run import Limits
from minivdm.course.submissions import Submission, find_submissions
from minivdm.io.atomic_files import write_text_atomically

GRADER_VERSION = 1  # bump when a change of the grader changes rows: older resume state is then regraded
GRADEBOOK_COLUMNS = ("student", "exercise", "check", "title", "status", "points", "max_points", "message", "file")


@dataclass(frozen=True)
class GradebookPaths:
    gradebook: Path

    @property
    def summary(self) -> Path:
        return self.gradebook.with_name(self.gradebook.stem + ".summary.csv")

    @property
    def reports(self) -> Path:
        return self.gradebook.with_name(self.gradebook.stem + ".reports")

    @property
    def quarantine(self) -> Path:
        return self.gradebook.with_name(self.gradebook.stem + ".quarantine")

    @property
    def state(self) -> Path:
        return self.gradebook.with_name(self.gradebook.stem + ".graded.jsonl")


# ---------------------------------------------------------------- points

def read_weights(path: Path, exercises: dict[str, ReleasedExercise]) -> dict[tuple[str, int], float]:
    """An instructor's points: a CSV with columns exercise, check, points. ``exercise`` is a released
    exercise's name or number (01); ``check`` a check's number or ``*`` for all its checks (a row for one
    check overrides a ``*`` row). Anything it names that does not exist is refused by name."""
    text = Path(path).read_text()
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or [name.strip() for name in reader.fieldnames] != ["exercise", "check", "points"]:
        raise ValueError(f"{path}: the weights file must have the header `exercise,check,points`, got {reader.fieldnames}")
    every, single = {}, {}
    for line, record in enumerate(reader, start=2):
        given = (record["exercise"] or "").strip()
        matches = [name for name in exercises if given in (name, name.split("_", 1)[0])]
        if len(matches) != 1:
            raise ValueError(f"{path} line {line}: no released exercise {given!r} (known: {', '.join(exercises)})")
        exercise = exercises[matches[0]]
        try:
            points = float(record["points"])
        except (TypeError, ValueError):
            raise ValueError(f"{path} line {line}: points must be a number, got {record['points']!r}") from None
        if points < 0:
            raise ValueError(f"{path} line {line}: points must be >= 0, got {points}")
        check = (record["check"] or "").strip()
        if check == "*":
            every[exercise.name] = points
        elif check.isdigit() and 1 <= int(check) <= len(exercise.checks):
            single[(exercise.name, int(check))] = points
        else:
            raise ValueError(f"{path} line {line}: {exercise.name} has checks 1 to {len(exercise.checks)} "
                             f"(or * for all), got {check!r}")
    weights = {}
    for exercise in exercises.values():
        for check in exercise.checks:
            key = (exercise.name, check.number)
            if key in single or exercise.name in every:
                weights[key] = single.get(key, every.get(exercise.name))
    return weights


def _check_number(row: Row) -> int | None:
    match = re.fullmatch(r"check (\d+)", row.check)
    return int(match.group(1)) if match else None


def points_of(row: Row, weights: dict[tuple[str, int], float] | None) -> tuple[str, str]:
    number = _check_number(row)
    if number is None:
        return "", ""
    worth = 1.0 if weights is None else weights.get((row.exercise, number))
    if worth is None:
        raise ValueError(f"the weights file gives no points for {row.exercise} check {number}: add a row "
                         f"`{row.exercise},{number},POINTS` (or `{row.exercise},*,POINTS` for all its checks)")
    got = worth if row.status == "passed" else 0.0
    return f"{got:g}", f"{worth:g}"


# ---------------------------------------------------------------- the resume state

def _state_key(submission: Submission, exercises: dict[str, ReleasedExercise], limits: Limits) -> str:
    parts = [str(GRADER_VERSION), submission.student, submission.sha256, limits.key(),
             *(exercise.fingerprint for exercise in exercises.values())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def read_state(path: Path) -> dict[str, tuple[str, list[Row]]]:
    """file -> (key, rows), the last line for each file winning; a line cut short by a crash is skipped."""
    state = {}
    if not path.exists():
        return state
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            rows = [Row(**{name: str(value[name]) for name in Row.__dataclass_fields__}) for value in record["rows"]]
            state[str(record["file"])] = (str(record["key"]), rows)
        except (ValueError, KeyError, TypeError):
            continue
    return state


def _append_state(path: Path, file: str, key: str, rows: list[Row]) -> None:
    line = json.dumps({"file": file, "key": key, "rows": [row.__dict__ for row in rows]}, ensure_ascii=False)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# ---------------------------------------------------------------- the folder must not change

def snapshot(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def restore(folder: Path, before: dict[Path, bytes], quarantine: Path) -> list[str]:
    """Bring ``folder`` back to ``before``: put back every file that was changed or deleted, and move
    every new file into ``quarantine`` (nothing is lost). Name each file it touched."""
    changed = []
    for path, content in before.items():
        if not path.is_file() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            changed.append(f"{path.relative_to(folder).as_posix()} (restored)")
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path not in before:
            relative = path.relative_to(folder)
            target = quarantine / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            changed.append(f"{relative.as_posix()} (new; moved to the quarantine folder beside the gradebook)")
    return changed


# ---------------------------------------------------------------- the run

@dataclass
class Gradebook:
    rows: list[Row]
    paths: GradebookPaths
    graded_now: int       # submissions graded by this run
    reused: int           # submissions taken from the resume state


def _sort_key(row: Row):
    number = _check_number(row)
    return (row.student, row.exercise, row.file, number if number is not None else 10**6, row.check, row.status)


def assemble(submissions: list[Submission], unnamed: list[str], graded: dict[str, list[Row]],
             exercises: dict[str, ReleasedExercise]) -> list[Row]:
    """All rows: each submission's, a row for each notebook whose student cannot be told, and "missing"
    rows for each exercise another student handed in and this one did not."""
    rows = [row for submission in submissions for row in graded.get(submission.relative_path, [])]
    rows += [Row("", Path(file).stem, NOTEBOOK, "", "unknown student",
                 f"cannot tell whose notebook this is: name it <student>__<exercise>.ipynb or put it in a folder "
                 f"named after the student", file) for file in unnamed]
    handed_in = defaultdict(set)
    for row in rows:
        if row.exercise in exercises and row.student:
            handed_in[row.student].add(row.exercise)
    in_gradebook = set().union(*handed_in.values()) if handed_in else set()
    for student in sorted(handed_in):
        for name in sorted(in_gradebook - handed_in[student]):
            rows.append(Row(student, name, NOTEBOOK, "", "missing", "no notebook handed in for this exercise", ""))
            rows += rows_for_every_check(None, student, exercises[name], "not graded", "no notebook handed in")
    return sorted(rows, key=_sort_key)


def gradebook_csv(rows: list[Row], weights) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(GRADEBOOK_COLUMNS)
    for row in rows:
        points, max_points = points_of(row, weights)
        writer.writerow([row.student, row.exercise, row.check, row.title, row.status, points, max_points,
                         row.message, row.file])
    return out.getvalue()


def summary_rows(rows: list[Row], weights) -> list[dict[str, str]]:
    exercises = sorted({row.exercise for row in rows if _check_number(row) is not None})
    table = []
    for student in sorted({row.student for row in rows if row.student}):
        mine = [row for row in rows if row.student == student and _check_number(row) is not None]
        record = {"student": student, "checks_passed": str(sum(row.status == "passed" for row in mine)),
                  "checks_total": str(len(mine))}
        points = [points_of(row, weights) for row in mine]
        record["points"] = f"{sum(float(got) for got, _ in points):g}"
        record["max_points"] = f"{sum(float(worth) for _, worth in points):g}"
        for name in exercises:
            of_exercise = [row for row in mine if row.exercise == name]
            passed = sum(row.status == "passed" for row in of_exercise)
            record[name] = f"{passed}/{len(of_exercise)}" if of_exercise else ""
        table.append(record)
    return table


def summary_csv(table: list[dict[str, str]]) -> str:
    out = io.StringIO()
    if table:
        writer = csv.DictWriter(out, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    return out.getvalue()


def write_outputs(paths: GradebookPaths, rows: list[Row], weights) -> None:
    write_text_atomically(paths.gradebook, gradebook_csv(rows, weights))
    table = summary_rows(rows, weights)
    write_text_atomically(paths.summary, summary_csv(table))
    write_reports(paths.reports, rows, table, write=write_text_atomically)


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


async def _grade_all(folder: Path, pending: list[tuple[Submission, str]], exercises, limits: Limits, jobs: int,
                     quarantine: Path, on_done) -> None:
    """Grade ``pending``, ``jobs`` at a time. When the submissions folder changed while several notebooks
    ran, those notebooks are graded again at the end, one at a time, so that the row names the one that
    changed it (and the gradebook does not depend on ``jobs``)."""
    before = snapshot(folder)
    gate = asyncio.Semaphore(jobs)
    running: set[str] = set()
    suspects: list[tuple[Submission, str]] = []
    with tempfile.TemporaryDirectory(prefix="minivdm-grade-") as scratch:
        async def one(submission: Submission, key: str, alone: bool) -> None:
            async with gate:
                running.add(submission.relative_path)
                try:
                    rows = await grade_submission(submission, exercises, limits, Path(scratch))
                except Exception as error:  # a grader bug must not cost the other rows: say so on this one
                    rows = [Row(submission.student, submission.named_exercise or Path(submission.relative_path).stem,
                                NOTEBOOK, "", "not graded", f"the grader failed: {type(error).__name__}: {error}",
                                submission.relative_path)]
                changed = await asyncio.to_thread(restore, folder, before, quarantine)
                if changed and (alone or running == {submission.relative_path}):
                    exercise = rows[0].exercise if rows else ""
                    rows.append(Row(submission.student, exercise, NOTEBOOK, "", "changed submissions",
                                    f"files in the submissions folder changed while this notebook ran: "
                                    f"{'; '.join(changed)}", submission.relative_path))
                elif changed:  # several ran: grade each of them again, alone
                    suspects.extend(item for item in pending if item[0].relative_path in running)
                running.discard(submission.relative_path)
                if alone or all(item[0].relative_path != submission.relative_path for item in suspects):
                    on_done(submission, key, rows)

        outcomes = await asyncio.gather(*(one(submission, key, alone=jobs == 1) for submission, key in pending),
                                        return_exceptions=True)  # one failure must not orphan the other kernels
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            raise failures[0]
        unique = list({item[0].relative_path: item for item in suspects}.values())
        for submission, key in unique:
            await one(submission, key, alone=True)


def run_stoppable(make_coroutine) -> None:
    """Run the grading loop in a thread of its own, so that Ctrl-C reaches this thread (nbclient would
    otherwise take SIGINT to shut the kernels down, and a notebook stopped that way would be saved as
    "kernel died"). On Ctrl-C the loop is cancelled (the kernels are shut down, and nothing unfinished is
    saved) and KeyboardInterrupt is raised here."""
    loop = asyncio.new_event_loop()
    task: list[asyncio.Task] = []
    failure: list[BaseException] = []

    def target() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(make_coroutine()))
        try:
            loop.run_until_complete(task[0])
        except BaseException as error:  # noqa: BLE001 - handed to the calling thread
            failure.append(error)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=target, name="minivdm-grade", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        if task:
            loop.call_soon_threadsafe(task[0].cancel)
        thread.join(60)
        raise
    if failure:
        raise failure[0]


def grade_folder(submissions_dir: str | Path, out: str | Path, *, exercises_dir: str | Path | None = None,
                 weights_path: str | Path | None = None, jobs: int | None = None, limits: Limits | None = None,
                 log=print) -> Gradebook:
    """Grade every notebook in ``submissions_dir``; write the gradebook to ``out`` (.csv) and the summary,
    reports and resume state beside it. Submissions graded before (same file, checks and limits) are reused."""
    folder, paths = Path(submissions_dir).resolve(), GradebookPaths(Path(out).resolve())
    if paths.gradebook.suffix.lower() != ".csv":
        raise ValueError(f"the gradebook is a .csv file, got {out}")
    if folder == paths.gradebook.parent or folder in paths.gradebook.parents:
        raise ValueError(f"write the gradebook outside the submissions folder {folder}: nothing is written there")
    exercises = released_exercises(Path(exercises_dir) if exercises_dir is not None else EXERCISES_DIR)
    weights = read_weights(Path(weights_path), exercises) if weights_path is not None else None
    jobs = jobs or default_jobs()
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    limits = limits or Limits(threads=max(1, (os.cpu_count() or 1) // jobs))
    submissions, unnamed = find_submissions(folder, list(exercises))

    state = read_state(paths.state)
    graded, pending = {}, []
    for submission in submissions:
        key = _state_key(submission, exercises, limits)
        if state.get(submission.relative_path, ("", []))[0] == key:
            graded[submission.relative_path] = state[submission.relative_path][1]
        else:
            pending.append((submission, key))
    reused = len(graded)
    log(f"{len(submissions)} notebooks from {len({s.student for s in submissions})} student(s) in {folder}: "
        f"{reused} already graded, {len(pending)} to grade with {jobs} job(s) (limits: {limits.describe()})")
    paths.state.parent.mkdir(parents=True, exist_ok=True)

    def on_done(submission: Submission, key: str, rows: list[Row]) -> None:
        _append_state(paths.state, submission.relative_path, key, rows)
        graded[submission.relative_path] = rows
        checks = [row for row in rows if _check_number(row) is not None]
        problems = sorted({row.status for row in rows if row.check == NOTEBOOK})
        log(f"graded {len(graded) - reused}/{len(pending)}: {submission.relative_path}: "
            f"{sum(row.status == 'passed' for row in checks)}/{len(checks)} checks passed"
            f"{' (' + ', '.join(problems) + ')' if problems else ''}")
        try:
            write_outputs(paths, assemble(submissions, unnamed, graded, exercises), weights)
        except ValueError as error:  # weights that miss an exercise told by content: said again at the end
            log(f"the gradebook is not written until this is fixed: {error}")

    for name in sorted({s.named_exercise for s in submissions if s.named_exercise} if weights is not None else ()):
        for check in exercises[name].checks:  # refuse weights that miss a named exercise before grading
            points_of(Row("", name, check_label(check.number), "", "passed", "", ""), weights)
    write_outputs(paths, assemble(submissions, unnamed, graded, exercises), weights)
    if pending:
        run_stoppable(lambda: _grade_all(folder, pending, exercises, limits, jobs, paths.quarantine, on_done))
    rows = assemble(submissions, unnamed, graded, exercises)
    write_outputs(paths, rows, weights)
    # keep one line per current submission, so the state does not grow with every run
    current = {submission.relative_path: _state_key(submission, exercises, limits) for submission in submissions}
    write_text_atomically(paths.state, "".join(
        json.dumps({"file": file, "key": current[file], "rows": [row.__dict__ for row in graded[file]]},
                   ensure_ascii=False) + "\n" for file in sorted(graded) if file in current))
    return Gradebook(rows, paths, graded_now=len(pending), reused=reused)

