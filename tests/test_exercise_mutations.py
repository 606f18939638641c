"""The exercise checks catch plausible wrong answers.

``bench/exercise_mutations.py`` holds ~100 hand-written wrong answers and runs them all (10-15 minutes).
Here: every one of them still applies to the current solutions (a stale list would silently measure
nothing). A few of them, those that only checks with non-square frames, per-item times, mixed-up axis
sizes and windows at the ends of a sequence catch, are handed in as students' work and graded in
tests/test_grade_exercises.py: each must fail its check with the check's teaching message.
"""

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("exercise_mutations", ROOT / "bench" / "exercise_mutations.py")
exercise_mutations = sys.modules["exercise_mutations"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(exercise_mutations)


@pytest.mark.parametrize("stem", list(exercise_mutations.MUTATIONS))
def test_every_mutation_applies_to_exactly_one_answer_region(stem):
    notebook = nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", as_version=4)
    for mutation in exercise_mutations.MUTATIONS[stem]:
        mutated = exercise_mutations.apply_mutation(notebook, mutation)  # raises when the text is not found once
        changed = [cell for before, cell in zip(notebook.cells, mutated.cells) if before.source != cell.source]
        assert len(changed) == 1 and mutation.new in changed[0].source


def test_the_list_is_large_enough_to_measure_a_catch_rate():
    counts = {stem: len(mutations) for stem, mutations in exercise_mutations.MUTATIONS.items()}
    assert all(count >= 8 for count in counts.values()) and sum(counts.values()) >= 60, counts

