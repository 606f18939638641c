"""`minivdm grade` on a class of generated submissions to a small released exercise: every kind of
notebook a student hands in (right, wrong, edited check, deleted check, endless loop, crash, broken file,
another exercise, huge output, network, memory, a cell that deletes another student's file, a rebound
check helper), the whole
gradebook compared row by row; resuming after an interruption gives the same gradebook."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from minivdm.course.exercises import make_exercise
from minivdm.course.gradebook import grade_folder, read_weights
from minivdm.course.check_cells import released_exercises
from minivdm.course.notebook_run import Limits

LIMITS = Limits(wall_time_s=12, memory_bytes=2 << 30, output_bytes=1 << 20, threads=1)


def code(source, tags=()):
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def solution_notebook() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Exercise 91: warm-up"),
        code("from minivdm.course import check_equal"),
        nbformat.v4.new_markdown_cell("## 1. Double it"),
        code("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
        code("check_equal(double(3), 6, 'double(3)', hint='twice x is x + x')", tags=["check"]),
        nbformat.v4.new_markdown_cell("## 2. Square it"),
        code("def square(x):\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION"),
        code("check_equal(square(4), 16, 'square(4)', hint='x times itself')", tags=["check"]),
        code("print('done')"),
    ]
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:02d}"
    return notebook


def other_notebook() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("## 1. Negate"), code("from minivdm.course import check_equal"),
                      code("def negate(x):\n    ### BEGIN SOLUTION\n    return -x\n    ### END SOLUTION"),
                      code("check_equal(negate(2), -2, 'negate(2)')", tags=["check"])]
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:02d}"
    return notebook


def answered(notebook, **replacements) -> nbformat.NotebookNode:
    """The solution with some cells' sources replaced (by index), as a student's file would hold it."""
    changed = nbformat.from_dict(notebook)
    for index, source in replacements.items():
        changed.cells[int(index.lstrip("c"))].source = source
    return changed


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("released")
    nbformat.write(make_exercise(solution_notebook()), folder / "91_warm_up.ipynb")
    nbformat.write(make_exercise(other_notebook()), folder / "92_negate.ipynb")
    return folder


def write(path: Path, notebook) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(notebook, (str, bytes)):
        path.write_bytes(notebook if isinstance(notebook, bytes) else notebook.encode())
    else:
        nbformat.write(notebook, path)


def make_class(folder: Path) -> None:
    solution = solution_notebook()
    write(folder / "alice" / "91_warm_up.ipynb", solution)
    write(folder / "alice" / "92_negate.ipynb", other_notebook())
    write(folder / "bob__91_warm_up.ipynb", answered(solution, c6="def square(x):\n    return 2 * x"))
    edited = answered(solution, c7="pass  # check_equal(square(4), 16, 'square(4)')", c6="def square(x):\n    return 0")
    write(folder / "carol" / "91 warm up (1).ipynb", edited)
    deleted = answered(solution)
    del deleted.cells[4]
    write(folder / "dave" / "homework.ipynb", deleted)  # named after no exercise: told by its checks
    write(folder / "erin" / "91_warm_up.ipynb", answered(solution, c6="def square(x):\n    while True:\n        pass\n"
                                                                       "square(1)"))
    write(folder / "frank" / "91_warm_up.ipynb", answered(solution, c6="import os\nos._exit(3)"))
    write(folder / "gina__91_warm_up.ipynb", nbformat.writes(solution)[:300])
    write(folder / "hank" / "91_warm_up.ipynb", other_notebook())
    write(folder / "ivan" / "91_warm_up.ipynb", answered(solution, c8="for i in range(30000):\n    print('x' * 99)"))
    write(folder / "judy" / "91_warm_up.ipynb", answered(
        solution, c8="import urllib.request\nurllib.request.urlopen('http://example.com', timeout=5)"))
    write(folder / "ken" / "91_warm_up.ipynb", answered(
        solution, c8=f"import os\nos.remove({str(folder / 'alice' / '92_negate.ipynb')!r})\n"
                     f"open({str(folder / 'ken' / 'extra.txt')!r}, 'w').write('x')"))
    write(folder / "mallory" / "91_warm_up.ipynb", answered(solution, c8="big = bytearray(3 << 30)"))
    write(folder / "oscar" / "91_warm_up.ipynb", answered(  # a wrong square, and a check helper that checks nothing
        solution, c6="def square(x):\n    return 2 * x\n\ncheck_equal = lambda *args, **kwargs: None"))
    write(folder / "stray.ipynb", solution)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# (student, exercise, check, status, points) of every row, in the gradebook's order
EXPECTED = [
    ("", "stray", "notebook", "unknown student", ""),
    ("alice", "91_warm_up", "check 1", "passed", "1"), ("alice", "91_warm_up", "check 2", "passed", "1"),
    ("alice", "92_negate", "check 1", "passed", "1"),
    ("bob", "91_warm_up", "check 1", "passed", "1"), ("bob", "91_warm_up", "check 2", "failed", "0"),
    ("bob", "92_negate", "check 1", "not graded", "0"), ("bob", "92_negate", "notebook", "missing", ""),
    ("carol", "91_warm_up", "check 1", "passed", "1"), ("carol", "91_warm_up", "check 2", "modified", "0"),
    ("carol", "92_negate", "check 1", "not graded", "0"), ("carol", "92_negate", "notebook", "missing", ""),
    ("dave", "91_warm_up", "check 1", "modified", "0"), ("dave", "91_warm_up", "check 2", "passed", "1"),
    ("dave", "92_negate", "check 1", "not graded", "0"), ("dave", "92_negate", "notebook", "missing", ""),
    ("erin", "91_warm_up", "check 1", "passed", "1"), ("erin", "91_warm_up", "check 2", "not reached", "0"),
    ("erin", "91_warm_up", "notebook", "timeout", ""),
    ("erin", "92_negate", "check 1", "not graded", "0"), ("erin", "92_negate", "notebook", "missing", ""),
    ("frank", "91_warm_up", "check 1", "passed", "1"), ("frank", "91_warm_up", "check 2", "not reached", "0"),
    ("frank", "91_warm_up", "notebook", "kernel died", ""),
    ("frank", "92_negate", "check 1", "not graded", "0"), ("frank", "92_negate", "notebook", "missing", ""),
    ("gina", "91_warm_up", "check 1", "not graded", "0"), ("gina", "91_warm_up", "check 2", "not graded", "0"),
    ("gina", "91_warm_up", "notebook", "unreadable", ""),
    ("gina", "92_negate", "check 1", "not graded", "0"), ("gina", "92_negate", "notebook", "missing", ""),
    ("hank", "91_warm_up", "check 1", "not graded", "0"), ("hank", "91_warm_up", "check 2", "not graded", "0"),
    ("hank", "91_warm_up", "notebook", "wrong exercise", ""),
    ("hank", "92_negate", "check 1", "not graded", "0"), ("hank", "92_negate", "notebook", "missing", ""),
    ("ivan", "91_warm_up", "check 1", "passed", "1"), ("ivan", "91_warm_up", "check 2", "passed", "1"),
    ("ivan", "91_warm_up", "notebook", "output truncated", ""),
    ("ivan", "92_negate", "check 1", "not graded", "0"), ("ivan", "92_negate", "notebook", "missing", ""),
    ("judy", "91_warm_up", "check 1", "passed", "1"), ("judy", "91_warm_up", "check 2", "passed", "1"),
    ("judy", "91_warm_up", "notebook", "network refused", ""),
    ("judy", "92_negate", "check 1", "not graded", "0"), ("judy", "92_negate", "notebook", "missing", ""),
    ("ken", "91_warm_up", "check 1", "passed", "1"), ("ken", "91_warm_up", "check 2", "passed", "1"),
    ("ken", "91_warm_up", "notebook", "changed submissions", ""),
    ("ken", "92_negate", "check 1", "not graded", "0"), ("ken", "92_negate", "notebook", "missing", ""),
    ("mallory", "91_warm_up", "check 1", "passed", "1"), ("mallory", "91_warm_up", "check 2", "passed", "1"),
    ("mallory", "91_warm_up", "notebook", "memory limit", ""),
    ("mallory", "92_negate", "check 1", "not graded", "0"), ("mallory", "92_negate", "notebook", "missing", ""),
    ("oscar", "91_warm_up", "check 1", "passed", "1"), ("oscar", "91_warm_up", "check 2", "passed", "1"),
    ("oscar", "91_warm_up", "notebook", "check tampering", ""),
    ("oscar", "92_negate", "check 1", "not graded", "0"), ("oscar", "92_negate", "notebook", "missing", ""),
]


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory, released):
    root = tmp_path_factory.mktemp("class")
    make_class(root / "submissions")
    before = {path: path.read_bytes() for path in (root / "submissions").rglob("*") if path.is_file()}
    gradebook = grade_folder(root / "submissions", root / "grades" / "gradebook.csv", exercises_dir=released, jobs=2,
                             limits=LIMITS, log=lambda line: None)
    return root, before, gradebook


def test_every_row_of_the_gradebook(graded_class):
    root, _, gradebook = graded_class
    rows = read_rows(root / "grades" / "gradebook.csv")
    assert [(r["student"], r["exercise"], r["check"], r["status"], r["points"]) for r in rows] == EXPECTED
    by_key = {(r["student"], r["check"], r["exercise"]): r for r in rows}
    assert by_key[("bob", "check 2", "91_warm_up")]["message"] == "square(4) is 8, expected 16.\nHint: x times itself"
    assert by_key[("bob", "check 2", "91_warm_up")]["file"] == "bob__91_warm_up.ipynb"
    carol = by_key[("carol", "check 2", "91_warm_up")]["message"]
    assert carol.startswith("check cell modified: cell 8 differs from the released check 2") and "square(4) is 0" in carol
    assert by_key[("carol", "check 2", "91_warm_up")]["file"] == "carol/91 warm up (1).ipynb"
    assert by_key[("dave", "check 1", "91_warm_up")]["message"].startswith("check cell deleted")
    assert "time limit of 12 s in cell 7 (starts `def square(x):`)" in by_key[("erin", "notebook", "91_warm_up")]["message"]
    assert "kernel died while running cell 7 (starts `import os`)" in by_key[("frank", "notebook", "91_warm_up")]["message"]
    assert "NotJSONError" in by_key[("gina", "notebook", "91_warm_up")]["message"]
    assert "holds the check cells of 92_negate" in by_key[("hank", "notebook", "91_warm_up")]["message"]
    assert "cell 9 (starts `import urllib.request`)" in by_key[("judy", "notebook", "91_warm_up")]["message"]
    assert "limit 2 GiB" in by_key[("mallory", "notebook", "91_warm_up")]["message"]
    ken = by_key[("ken", "notebook", "91_warm_up")]["message"]
    assert "alice/92_negate.ipynb (restored)" in ken and "ken/extra.txt (new; moved to the quarantine" in ken
    assert "cell 7 line 4: `check_equal = lambda *args, **kwargs: None`" in by_key[("oscar", "notebook", "91_warm_up")]["message"]
    assert gradebook.graded_now == 14 and gradebook.reused == 0


def test_nothing_in_the_submissions_folder_changes(graded_class):
    root, before, _ = graded_class
    after = {path: path.read_bytes() for path in (root / "submissions").rglob("*") if path.is_file()}
    assert after == before  # the deleted file was put back, the new one moved out
    assert (root / "grades" / "gradebook.quarantine" / "ken" / "extra.txt").read_text() == "x"


def test_summary_and_reports(graded_class):
    root, _, _ = graded_class
    summary = {r["student"]: r for r in read_rows(root / "grades" / "gradebook.summary.csv")}
    assert (summary["alice"]["checks_passed"], summary["alice"]["checks_total"], summary["alice"]["points"]) == ("3", "3", "3")
    assert (summary["bob"]["checks_passed"], summary["bob"]["91_warm_up"], summary["bob"]["92_negate"]) == ("1", "1/2", "0/1")
    report = (root / "grades" / "gradebook.reports" / "bob.md").read_text()
    assert "### check 2 (failed): 2. Square it" in report and "square(4) is 8, expected 16." in report
    assert "Checks passed: **1 of 3**" in report


def test_rerun_reuses_every_submission_and_writes_the_same_gradebook(graded_class, released):
    root, _, _ = graded_class
    first = (root / "grades" / "gradebook.csv").read_bytes()
    again = grade_folder(root / "submissions", root / "grades" / "gradebook.csv", exercises_dir=released, jobs=1,
                         limits=LIMITS, log=lambda line: None)
    assert (again.graded_now, again.reused) == (0, 14)
    assert (root / "grades" / "gradebook.csv").read_bytes() == first


def test_only_a_changed_submission_is_graded_again(graded_class, released, tmp_path):
    root, _, _ = graded_class
    shutil.copytree(root / "submissions" / "alice", tmp_path / "submissions" / "alice")
    shutil.copyfile(root / "submissions" / "bob__91_warm_up.ipynb", tmp_path / "submissions" / "bob__91_warm_up.ipynb")
    shutil.copytree(root / "grades", tmp_path / "grades")
    write(tmp_path / "submissions" / "bob__91_warm_up.ipynb", solution_notebook())  # bob fixed his square
    again = grade_folder(tmp_path / "submissions", tmp_path / "grades" / "gradebook.csv", exercises_dir=released,
                         jobs=1, limits=LIMITS, log=lambda line: None)
    assert (again.graded_now, again.reused) == (1, 2)
    bob = [(row.check, row.status) for row in again.rows if row.student == "bob" and row.exercise == "91_warm_up"]
    assert bob == [("check 1", "passed"), ("check 2", "passed")]
    longer = Limits(wall_time_s=13, memory_bytes=LIMITS.memory_bytes, output_bytes=LIMITS.output_bytes)
    regraded = grade_folder(tmp_path / "submissions", tmp_path / "grades" / "gradebook.csv", exercises_dir=released,
                            jobs=2, limits=longer, log=lambda line: None)
    assert regraded.graded_now == 3  # other limits can change a grade: everything is graded again


def test_weights_give_points_and_refuse_what_does_not_exist(graded_class, released, tmp_path):
    root, _, _ = graded_class
    weights = tmp_path / "weights.csv"
    weights.write_text("exercise,check,points\n91,*,2\n91_warm_up,2,5\n92_negate,1,1\n")
    shutil.copyfile(root / "grades" / "gradebook.graded.jsonl", tmp_path / "gradebook.graded.jsonl")  # points only
    grade_folder(root / "submissions", tmp_path / "gradebook.csv", exercises_dir=released, weights_path=weights,
                 jobs=1, limits=LIMITS, log=lambda line: None)
    summary = {r["student"]: r for r in read_rows(tmp_path / "gradebook.summary.csv")}
    assert (summary["alice"]["points"], summary["alice"]["max_points"]) == ("8", "8")
    assert (summary["bob"]["points"], summary["bob"]["max_points"]) == ("2", "8")
    exercises = released_exercises(released)
    for text, expected in (("exercise,check,points\n93,*,1\n", "no released exercise '93'"),
                           ("exercise,check,points\n91,3,1\n", "has checks 1 to 2"),
                           ("exercise,points\n91,1\n", "header `exercise,check,points`"),
                           ("exercise,check,points\n91,1,many\n", "points must be a number")):
        weights.write_text(text)
        with pytest.raises(ValueError, match=expected):
            read_weights(weights, exercises)
    weights.write_text("exercise,check,points\n91,*,1\n")
    with pytest.raises(ValueError, match="gives no points for 92_negate check 1"):
        grade_folder(root / "submissions", tmp_path / "other.csv", exercises_dir=released, weights_path=weights,
                     jobs=1, limits=LIMITS, log=lambda line: None)


@pytest.mark.parametrize("stop", ["ctrl-c", "kill -9"])
def test_an_interrupted_run_resumes_to_the_same_gradebook(tmp_path, released, graded_class, stop):
    """Stop the grader part way, with one job (Ctrl-C: it shuts its kernels down and says how to go on;
    SIGKILL: no chance to clean up), then run the same command with two jobs: it grades only the rest,
    and the gradebook equals the uninterrupted run's."""
    root, _, _ = graded_class
    make_class(tmp_path / "submissions")
    out = tmp_path / "grades" / "gradebook.csv"

    def command(jobs):
        return [sys.executable, "-m", "minivdm", "grade", str(tmp_path / "submissions"), "--out", str(out),
                "--exercises", str(released), "--jobs", str(jobs), "--timeout", "12", "--memory", "2", "--max-output", "1"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command(1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        state = out.with_name("gradebook.graded.jsonl")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not state.exists() or len(state.read_text().splitlines()) < 3):
            time.sleep(0.2)
        process.send_signal(signal.SIGINT if stop == "ctrl-c" else signal.SIGKILL)
        _, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:  # never leave a grader running behind a failed test
            process.kill()
            process.wait()
    if stop == "ctrl-c":
        assert process.returncode == 130 and "run the same command again to go on" in stderr, stderr
    saved = state.read_text()
    done_before = len(saved.splitlines())
    assert 3 <= done_before < 14, "the grader should have been stopped part way"
    # a notebook cut short by the stop is not saved as a crash (frank's kernel does die, by his own hand)
    assert all("kernel died" not in line for line in saved.splitlines() if '"frank/' not in line)
    resumed = subprocess.run(command(2), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done_before} already graded, {14 - done_before} to grade" in resumed.stderr
    expected = (root / "grades" / "gradebook.csv").read_text()
    assert out.read_text() == expected


def test_resume_state_survives_a_line_cut_short(tmp_path):
    from minivdm.course.gradebook import read_state

    state = tmp_path / "g.graded.jsonl"
    whole = '{"file": "a.ipynb", "key": "k1", "rows": [{"student": "a", "exercise": "91", "check": "check 1", ' \
            '"title": "t", "status": "passed", "message": "", "file": "a.ipynb"}]}'
    state.write_text(whole + "\n" + whole.replace("a.ipynb", "b.ipynb")[:70])
    read = read_state(state)
    assert list(read) == ["a.ipynb"] and read["a.ipynb"][0] == "k1" and read["a.ipynb"][1][0].status == "passed"


def test_grade_refuses_bad_arguments(tmp_path, released):
    (tmp_path / "submissions").mkdir()
    with pytest.raises(ValueError, match="outside the submissions folder"):
        grade_folder(tmp_path / "submissions", tmp_path / "submissions" / "g.csv", exercises_dir=released)
    with pytest.raises(FileNotFoundError, match="no released exercise with check cells"):
        grade_folder(tmp_path / "submissions", tmp_path / "g.csv", exercises_dir=tmp_path / "submissions")
    from minivdm.__main__ import main

    with pytest.raises(SystemExit):
        main(["grade", str(tmp_path / "nowhere"), "--out", str(tmp_path / "g.csv")])
    with pytest.raises(SystemExit):
        main(["grade", str(tmp_path / "submissions"), "--out", str(tmp_path / "g.txt")])


def test_both_layouts_and_the_names_a_notebook_may_have(tmp_path, monkeypatch):
    from minivdm.course import submissions as submissions_module
    from minivdm.course.submissions import exercise_named_by, find_submissions

    names = ["01_diffusion_basics", "02_stable_diffusion"]
    assert exercise_named_by("01_diffusion_basics", names) == "01_diffusion_basics"
    assert exercise_named_by("01 v-param (1)", names) == "01_diffusion_basics"
    assert exercise_named_by("2-guidance", names) == "02_stable_diffusion"
    assert exercise_named_by("homework", names) is None and exercise_named_by("03_x", names) is None
    for relative in ("alice/01_diffusion_basics.ipynb", "alice/sub/02 guidance.ipynb", "bob__02_stable_diffusion.ipynb",
                     "alice/.ipynb_checkpoints/01_diffusion_basics-checkpoint.ipynb", ".hidden/x.ipynb",
                     "alice/notes.txt", "noname.ipynb", "__01_diffusion_basics.ipynb", "carol/big.ipynb"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("{}" if "big" not in relative else "x" * 100)
    monkeypatch.setattr(submissions_module, "MAX_NOTEBOOK_BYTES", 50)
    found, unnamed = find_submissions(tmp_path, names)
    assert [(s.student, s.relative_path, s.named_exercise) for s in found] == [
        ("alice", "alice/01_diffusion_basics.ipynb", "01_diffusion_basics"),
        ("alice", "alice/sub/02 guidance.ipynb", "02_stable_diffusion"),
        ("bob", "bob__02_stable_diffusion.ipynb", "02_stable_diffusion"),
        ("carol", "carol/big.ipynb", None)]
    assert "MiB, more than any exercise notebook" in found[3].problem and not found[0].problem
    assert unnamed == ["__01_diffusion_basics.ipynb", "noname.ipynb"]
