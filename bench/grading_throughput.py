"""How fast does `minivdm grade` get through a class? Submissions per minute for the five exercises.

    .venv/bin/python bench/grading_throughput.py [--students 4] [--jobs 1 2] [--json results.json]

Makes a class of ``--students`` students who each hand in all five exercises (the solutions, so every
notebook runs to its end: the slowest case), grades it from scratch once per ``--jobs`` value, and
prints the wall time, submissions per minute and seconds per submission, per exercise too (from a
one-job run). A second run over the same folder shows what resuming costs (nothing is graded again).
Run it on an otherwise idle machine: another process competing for the cores halves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from minivdm.course.gradebook import grade_folder
from minivdm.course.notebook_run import Limits

ROOT = Path(__file__).resolve().parents[1]


def make_class(folder: Path, students: int) -> int:
    count = 0
    for number in range(students):
        for solution in sorted((ROOT / "solutions").glob("*.ipynb")):
            target = folder / f"student{number:02d}" / solution.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(solution, target)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    results = {"cores": cores, "students": args.students, "runs": []}
    with tempfile.TemporaryDirectory() as scratch:
        submissions = Path(scratch) / "submissions"
        count = make_class(submissions, args.students)
        print(f"{count} submissions ({args.students} students x 5 exercises, every answer right), {cores} cores")
        for jobs in args.jobs:
            out = Path(scratch) / f"grades_{jobs}" / "gradebook.csv"
            finished: list[tuple[float, str]] = []
            start = time.perf_counter()

            def log(line: str) -> None:
                if line.startswith("graded "):
                    finished.append((time.perf_counter(), line))

            gradebook = grade_folder(submissions, out, jobs=jobs, limits=Limits(threads=max(1, cores // jobs)), log=log)
            seconds = time.perf_counter() - start
            passed = sum(row.status == "passed" for row in gradebook.rows)
            checks = sum(row.check.startswith("check ") for row in gradebook.rows)
            start_again = time.perf_counter()
            again = grade_folder(submissions, out, jobs=jobs, log=lambda line: None)
            resume_seconds = time.perf_counter() - start_again
            run = {"jobs": jobs, "seconds": round(seconds, 1), "per_minute": round(count / seconds * 60, 1),
                   "seconds_each": round(seconds / count, 2), "checks_passed": passed, "checks": checks,
                   "resume_seconds": round(resume_seconds, 2), "regraded_on_resume": again.graded_now}
            if jobs == 1:  # the time of each notebook, from the moment the previous one finished
                previous, per_exercise = start, {}
                for moment, line in finished:
                    exercise = re.search(r"([^/]+)\.ipynb: ", line).group(1)
                    per_exercise.setdefault(exercise, []).append(moment - previous)
                    previous = moment
                run["seconds_per_exercise"] = {name: round(sum(v) / len(v), 1) for name, v in sorted(per_exercise.items())}
            results["runs"].append(run)
            print(f"--jobs {jobs}: {seconds:.0f} s for {count} notebooks = {run['per_minute']:.1f} submissions/minute "
                  f"({run['seconds_each']:.1f} s each); {passed}/{checks} checks passed; "
                  f"re-run: {resume_seconds:.1f} s, {again.graded_now} graded again")
            if "seconds_per_exercise" in run:
                print("   one job, seconds per notebook: " +
                      ", ".join(f"{name} {value}" for name, value in run["seconds_per_exercise"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
