"""The exercise checks catch plausible wrong answers.

``bench/exercise_mutations.py`` holds ~100 hand-written wrong answers and runs them all (10-15 minutes).
Here: every one of them still applies to the current solutions (a stale list would silently measure
nothing), and a few that only checks with non-square frames, per-item times, mixed-up axis sizes and
windows at the ends of a sequence catch are executed in a kernel and must fail at a check cell.
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

# cheap to run (each stops at an early check cell) and each one missed before the checks were tightened
REPRESENTATIVE = [
    ("01_diffusion_basics", "v: scalar-only (float(alpha))"),
    ("02_stable_diffusion", "attention: heads merged as (d h)"),
    ("03_video_diffusion_models", "attention: heads taken as head width"),
    ("03_video_diffusion_models", "block: h and w swapped when folding back"),
    ("04_reconstruction_guidance", "replace: number of known frames from the batch axis"),
    ("05_data_curation", "cuts: window t-2..t+1 (off by one at the end)"),
    ("05_data_curation", "motion: width from the height axis"),
]


def _mutation(stem: str, name: str):
    return next(m for m in exercise_mutations.MUTATIONS[stem] if m.name == name)


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


@pytest.mark.notebooks
@pytest.mark.parametrize("stem, name", REPRESENTATIVE, ids=[f"{s[:2]}-{n}" for s, n in REPRESENTATIVE])
def test_a_wrong_answer_fails_at_a_check_cell(stem, name):
    path = ROOT / "solutions" / f"{stem}.ipynb"
    mutated = exercise_mutations.apply_mutation(nbformat.read(path, as_version=4), _mutation(stem, name))
    outcome, error = exercise_mutations.execute(mutated, path, timeout=120)
    assert outcome == "caught", f"{stem}: {name!r} was {outcome} {error}"
    assert error.startswith("CheckFailed:"), f"the check should fail with its teaching message, got {error}"
