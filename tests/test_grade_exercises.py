"""`minivdm grade` on the course's own exercises: a student who hands in every solution passes every
check; students who each made one plausible mistake (from bench/exercise_mutations.py) fail the check
that tests it (and only the checks that use the wrong function), with its teaching message in the gradebook and in their report; a student who
hands in an exercise untouched fails every check with "not written yet". The whole gradebook is compared."""

from __future__ import annotations

import csv
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from minivdm.course.check_cells import released_exercises
from minivdm.course.gradebook import grade_folder
from minivdm.course.notebook_run import Limits

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("exercise_mutations", ROOT / "bench" / "exercise_mutations.py")
exercise_mutations = sys.modules.setdefault("exercise_mutations", importlib.util.module_from_spec(_spec))
if not hasattr(exercise_mutations, "MUTATIONS"):
    _spec.loader.exec_module(exercise_mutations)

# (student, exercise, mutation): each one was missed before the checks were tightened to try more than the
# easy case (non-square frames, per-item times, mixed-up axis sizes, windows at the ends of a sequence)
MISTAKES = [
    ("ana", "01_diffusion_basics", "v: scalar-only (float(alpha))"),
    ("ben", "02_stable_diffusion", "attention: heads merged as (d h)"),
    ("cai", "03_video_diffusion_models", "attention: heads taken as head width"),
    ("dan", "03_video_diffusion_models", "block: h and w swapped when folding back"),
    ("eve", "04_reconstruction_guidance", "replace: number of known frames from the batch axis"),
    ("fay", "05_data_curation", "cuts: window t-2..t+1 (off by one at the end)"),
    ("gus", "05_data_curation", "motion: width from the height axis"),
    ("hal", "06_text2video_zero", "warp: mirrored once only (no 2 * size period)"),
]
# the check of the section with the mistake fails; so does a later one that calls the wrong function
# (the whole attention block of exercise 3 uses the learner's temporal_attention)
FAILED_CHECKS = {"ana": {1}, "ben": {1}, "cai": {2, 4}, "dan": {4}, "eve": {1}, "fay": {2}, "gus": {3}, "hal": {2}}


def mutation(stem: str, name: str):
    return next(m for m in exercise_mutations.MUTATIONS[stem] if m.name == name)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("course_class")
    submissions = root / "submissions"
    for solution in sorted((ROOT / "solutions").glob("*.ipynb")):
        (submissions / "solver").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(solution, submissions / "solver" / solution.name)
    for student, stem, name in MISTAKES:
        wrong = exercise_mutations.apply_mutation(nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", as_version=4),
                                                  mutation(stem, name))
        nbformat.write(wrong, submissions / f"{student}__{stem}.ipynb")
    shutil.copyfile(ROOT / "exercises" / "01_diffusion_basics.ipynb", submissions / "idle__01_diffusion_basics.ipynb")
    grade_folder(submissions, root / "gradebook.csv", jobs=2, limits=Limits(wall_time_s=300, threads=1),
                 log=lambda line: None)
    with open(root / "gradebook.csv", newline="") as handle:
        return root, list(csv.DictReader(handle))


@pytest.mark.notebooks
def test_the_whole_gradebook(graded):
    root, rows = graded
    exercises = released_exercises(ROOT / "exercises")
    expected = []
    students = sorted({"solver", "idle", *(student for student, _, _ in MISTAKES)})
    for student in students:
        for name, exercise in exercises.items():
            handed_in = (student == "solver" or (student == "idle" and name == "01_diffusion_basics")
                         or any(s == student and stem == name for s, stem, _ in MISTAKES))
            for check in exercise.checks:
                if not handed_in:
                    status = "not graded"
                elif student == "idle":
                    status = "failed"
                elif student == "solver" or check.number not in FAILED_CHECKS[student]:
                    status = "passed"
                else:
                    status = "failed"
                expected.append((student, name, f"check {check.number}", status))
            if not handed_in:
                expected.append((student, name, "notebook", "missing"))
    assert [(r["student"], r["exercise"], r["check"], r["status"]) for r in rows] == expected


@pytest.mark.notebooks
def test_failed_checks_carry_their_teaching_message(graded):
    root, rows = graded
    exercises = released_exercises(ROOT / "exercises")
    for student, stem, _ in MISTAKES:
        row = next(r for r in rows if r["student"] == student and r["exercise"] == stem and r["status"] == "failed")
        check = exercises[stem].checks[min(FAILED_CHECKS[student]) - 1]
        assert row["check"] == f"check {check.number}"
        # the check's own message (CheckFailed's text, which names the function), not a bare exception
        assert not re.match(r"\w+(Error|Exception)\b", row["message"]) and "Traceback" not in row["message"], row
        hints = [part.split('"')[0] for part in check.source.split('hint="')[1:]]
        assert any(hint[:40] in row["message"] for hint in hints), (row, hints)
        assert row["message"] in (root / "gradebook.reports" / f"{student}.md").read_text()
    idle = [r for r in rows if r["student"] == "idle" and r["exercise"] == "01_diffusion_basics" and r["check"] != "notebook"]
    assert all("is not written yet: replace the `raise NotImplementedError`" in r["message"] for r in idle)


def test_tampering_flags_rebound_references_and_helpers_but_no_solution():
    from minivdm.course.tampering import rebindings

    exercises = released_exercises(ROOT / "exercises")
    for name, exercise in exercises.items():  # no false alarm on the course's own answers
        assert rebindings(nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4), exercise.sources,
                          exercise.protected) == [], name
    exercise = exercises["01_diffusion_basics"]
    notebook = nbformat.read(ROOT / "solutions" / "01_diffusion_basics.ipynb", as_version=4)
    cheats = ["reference.v_from_x0_eps = v_from_x0_eps", "check_function_output = lambda *args, **kwargs: None",
              "setattr(reference, 'ddim_step', None)", "c.check_close = print", "from my_answers import reference",
              "def check_function_output(*args, **kwargs):\n    pass", "del reference"]
    honest = ["torch.backends.cudnn.deterministic = True", "x = reference.v_from_x0_eps(x0, eps, alpha, sigma)",
              "import minivdm.course.checks as c", "%time y = 1", "schedule = CosineSchedule()"]
    notebook.cells[4].source += "\n" + "\n".join(cheats + honest)
    found = [item.text for item in rebindings(notebook, exercise.sources, exercise.protected)]
    assert found == [cheat.split("\n")[0] for cheat in cheats], found
