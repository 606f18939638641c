"""Setup files agree: environment.yml carries exactly pyproject's dependencies (runtime + dev)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])


def _environment_requirements() -> set[str]:
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    entries = re.findall(r"^\s+-\s+(\S.*)$", pip_section, flags=re.MULTILINE)
    return {entry.strip() for entry in entries if entry.strip() != "-e ."}


def test_environment_yml_matches_pyproject():
    pyproject, environment = _pyproject_requirements(), _environment_requirements()
    assert pyproject == environment, (
        f"only in pyproject.toml: {sorted(pyproject - environment)}; only in environment.yml: {sorted(environment - pyproject)}"
    )


def test_environment_yml_installs_the_package_itself():
    assert re.search(r"^\s+-\s+-e \.$", (ROOT / "environment.yml").read_text(), flags=re.MULTILINE)


def test_setup_installs_the_cpu_torch_wheel_before_anything_else():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert setup.index("torch==2.13.0") < setup.index('-e ".[dev]"')


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/test.sh" in ci
    assert "bash scripts/setup.sh" in readme
