"""One report per student (markdown): their grade per exercise, and every check that did not pass with
the message that says why, so the grade teaches as much as running the check in Jupyter would."""

from __future__ import annotations

import re
from pathlib import Path

from minivdm.course.grading import NOTEBOOK, Row


def report_file_name(student: str) -> str:
    """A file name for a student's report: their name with anything but letters, digits, '.', '-' as '_'."""
    return re.sub(r"[^\w.-]", "_", student).strip(".") or "_"


def student_report(student: str, rows: list[Row], summary: dict[str, str]) -> str:
    lines = [f"# Grade report: {student}", "",
             f"Checks passed: **{summary['checks_passed']} of {summary['checks_total']}**; "
             f"points: **{summary['points']} of {summary['max_points']}**.", ""]
    for exercise in sorted({row.exercise for row in rows}):
        mine = [row for row in rows if row.exercise == exercise]
        files = sorted({row.file for row in mine if row.file})
        lines += [f"## {exercise}" + (f" (`{'`, `'.join(files)}`)" if files else ""), ""]
        for row in (row for row in mine if row.check == NOTEBOOK):
            lines += [f"**{row.status}**: {row.message}", ""]
        checks = [row for row in mine if row.check != NOTEBOOK]
        if all(row.status == "not graded" for row in checks):  # missing, unreadable, another exercise: said above
            lines += [f"None of its {len(checks)} checks could be graded.", ""]
            continue
        lines += ["| check | section | result |", "|---|---|---|"]
        lines += [f"| {row.check} | {row.title.replace('|', '/')} | {row.status} |" for row in checks]
        lines.append("")
        for row in checks:
            if row.status != "passed" and row.message:
                lines += [f"### {row.check} ({row.status}): {row.title}", "", "```text", row.message, "```", ""]
    return "\n".join(lines)


def write_reports(folder: Path, rows: list[Row], summary: list[dict[str, str]], *, write) -> list[Path]:
    """Write ``<student>.md`` for every student of ``summary`` into ``folder``; return the paths."""
    written = []
    for record in summary:
        student = record["student"]
        path = Path(folder) / (report_file_name(student) + ".md")
        write(path, student_report(student, [row for row in rows if row.student == student], record))
        written.append(path)
    return written
