"""The course toolchain: exercises are generated from solutions, stay in sync, and fail at a check
cell (not at an import or a syntax error) until the learner writes the code."""

from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from minivdm.course import check_close, check_function_output
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
    assert error["ename"] == "AssertionError", f"a check should fail with a teaching AssertionError, got {error['ename']}"
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
