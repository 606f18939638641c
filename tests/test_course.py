"""The course toolchain: exercises are generated from solutions, stay in sync, and fail at a check
cell (not at an import or a syntax error) until the learner writes the code."""

import re
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from minivdm.course import CheckFailed, check_close, check_equal, check_function_output, check_that
from minivdm.course.exercises import make_exercise, strip_solution_regions, sync_exercises

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))
ALL_NOTEBOOKS = SOLUTIONS + EXERCISES + TUTORIALS


def test_strip_keeps_indentation_and_everything_outside_the_region():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\nprint('kept')"
    stripped = strip_solution_regions(source)
    assert "return x + y" not in stripped
    assert "    # YOUR CODE HERE\n    raise NotImplementedError" in stripped
    assert stripped.startswith("def f(x):\n    y = 1\n") and stripped.endswith("print('kept')")
    compile(stripped, "<exercise>", "exec")  # still valid Python


@pytest.mark.parametrize("source, match", [
    ("### BEGIN SOLUTION\nx = 1", "no ### END SOLUTION"),
    ("x = 1\n### END SOLUTION", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_strip_rejects_malformed_regions(source, match):
    with pytest.raises(ValueError, match=match):
        strip_solution_regions(source)


def test_there_is_an_exercise_for_every_solution_and_a_tutorial_per_chapter():
    assert SOLUTIONS, "no solution notebooks found"
    assert [p.name for p in SOLUTIONS] == [p.name for p in EXERCISES]
    assert {p.name for p in SOLUTIONS} <= {p.name for p in TUTORIALS}


def test_exercises_are_in_sync_with_solutions():
    stale = sync_exercises(check_only=True)
    assert not stale, f"regenerate with `python -m minivdm make-exercises`: {[str(p) for p in stale]}"


def test_sync_detects_a_hand_edited_exercise(tmp_path):
    solution = nbformat.read(SOLUTIONS[0], as_version=4)
    (tmp_path / "solutions").mkdir()
    nbformat.write(solution, tmp_path / "solutions" / "x.ipynb")
    assert sync_exercises(tmp_path / "solutions", tmp_path / "exercises") == [tmp_path / "exercises" / "x.ipynb"]
    assert sync_exercises(tmp_path / "solutions", tmp_path / "exercises", check_only=True) == []
    exercise_path = tmp_path / "exercises" / "x.ipynb"
    exercise_path.write_text(exercise_path.read_text().replace("YOUR CODE HERE", "my code"))
    assert sync_exercises(tmp_path / "solutions", tmp_path / "exercises", check_only=True) == [exercise_path]


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_are_stored_clean_and_start_with_the_setup_cell(path):
    notebook = nbformat.read(path, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "setup_notebook" in code_cells[0].source, "the first code cell must be the standard setup cell"
    assert all(not cell.outputs for cell in code_cells), "notebooks are committed without outputs"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_have_answers_and_checks(path):
    notebook = nbformat.read(path, as_version=4)
    assert any("### BEGIN SOLUTION" in cell.source for cell in notebook.cells)
    assert any("check" in cell.metadata.get("tags", []) for cell in notebook.cells)
    assert make_exercise(notebook).cells != notebook.cells


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: p.name)
def test_unfilled_exercise_fails_at_a_check_cell(path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    with pytest.raises(CellExecutionError):
        client.execute()
    failed = [cell for cell in notebook.cells if cell.cell_type == "code"
              and any(output.get("output_type") == "error" for output in cell.get("outputs", []))]
    assert len(failed) == 1
    error = next(output for output in failed[0].outputs if output.get("output_type") == "error")
    assert "check" in failed[0].metadata.get("tags", []), f"failed outside a check cell: {failed[0].source[:200]}"
    assert error["ename"] == "CheckFailed", f"a check should fail with a teaching CheckFailed, got {error['ename']}"
    assert "not written yet" in error["evalue"]


def test_check_messages_teach():
    expected = torch.zeros(2, 3)
    with pytest.raises(AssertionError, match=r"shape \(3, 2\), expected \(2, 3\)"):
        check_close(torch.zeros(3, 2), expected, "x")
    with pytest.raises(AssertionError, match=r"forget to `return`"):
        check_close(None, expected, "x")
    with pytest.raises(AssertionError, match=r"(?s)off by up to 0.5.*index \(1, 2\).*expected 0"):
        check_close(torch.tensor([[0.0, 0, 0], [0, 0, 0.5]]), expected, "x")
    with pytest.raises(AssertionError, match="NaN or inf"):
        check_close(torch.full((2, 3), float("nan")), expected, "x")

    def unwritten(a):
        raise NotImplementedError

    with pytest.raises(AssertionError, match=r"(?s)unwritten is not written yet.*Hint: think"):
        check_function_output(unwritten, (1,), expected, hint="think")
    check_close(expected + 1e-7, expected, "x")  # within tolerance: passes


def test_check_helpers_name_the_case_and_compare_plain_values():
    with pytest.raises(CheckFailed, match=r"(?s)find\(\.\.\.\) on the toy steps is \[2, 6\], expected \[3, 7\].*Hint: b = t \+ 1"):
        check_function_output(_named("find", lambda: [2, 6]), (), [3, 7], case="on the toy steps", hint="b = t + 1")
    with pytest.raises(CheckFailed, match=r"(?s)scale\(\.\.\.\) with one time per item raised RuntimeError: boom"):
        check_function_output(_named("scale", _raise(RuntimeError("boom"))), (), torch.zeros(1), case="with one time per item")
    with pytest.raises(CheckFailed, match="expected a list"):
        check_that(False, "expected a list")
    check_equal([3, 7], [3, 7], "cuts")
    assert issubclass(CheckFailed, AssertionError)  # code that catches AssertionError keeps working


def _named(name, function):
    function.__name__ = name
    return function


def _raise(error):
    def function():
        raise error
    return function


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_a_failed_check_shows_its_message_first_in_jupyter():
    """In a kernel, IPython renders a CheckFailed with _render_traceback_: the message, the hint, then only the
    notebook lines that led there (the check cell's call; the learner's line when their code raised)."""
    cells = [
        "import torch\nfrom minivdm.course import check_function_output\n\n"
        "def double(x):\n    return x + x + 1\n\n"
        "def flatten(x):\n    return x.view(5)",
        "check_function_output(double, (torch.zeros(2, 3),), torch.zeros(2, 3), hint='twice x, nothing more')",
        "check_function_output(flatten, (torch.zeros(2, 3),), torch.zeros(6), hint='6 values')",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True).execute()
    wrong_value, learner_raised = (next(o for o in cell.outputs if o.output_type == "error") for cell in notebook.cells[1:])

    assert wrong_value.ename == "CheckFailed"
    text = ANSI.sub("", "\n".join(wrong_value.traceback))
    assert text.startswith("CheckFailed: double(...) is off by up to 1 (allowed 1e-05)"), text
    assert text.index("Hint: twice x, nothing more") < text.index("where (your notebook):")
    assert "check_function_output(double, (torch.zeros(2, 3),)" in text  # the check cell's line
    assert "checks.py" not in text and "site-packages" not in text, text  # nothing from the machinery
    assert len(text.splitlines()) <= 6, text

    text = ANSI.sub("", "\n".join(learner_raised.traceback))
    assert text.startswith("CheckFailed: flatten(...) raised RuntimeError: shape '[5]' is invalid"), text
    assert "in flatten: return x.view(5)" in text, text  # the learner's line that raised
