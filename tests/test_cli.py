"""The command line refuses a user's mistakes with one line naming the problem, never a traceback."""

import subprocess
import sys

import pytest

from minivdm.__main__ import main


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: ["curate", str(tmp / "missing"), "--out", str(tmp / "o.jsonl")], "no folder at"),
    (lambda tmp: ["curate", str(tmp / "file.txt"), "--out", str(tmp / "o.jsonl")], "is a file; expected a folder"),
    (lambda tmp: ["curate", str(tmp), "--out", str(tmp / "folder")], "is a folder; expected a file name"),
    (lambda tmp: ["train-denoiser", "--prediction", "v", "--out", str(tmp / "folder")], "is a folder"),
    (lambda tmp: ["train-denoiser", "--prediction", "v", "--out", str(tmp / "w.pt")], "must end in .safetensors"),
    (lambda tmp: ["train-denoiser", "--prediction", "v", "--out", str(tmp / "w.safetensors"), "--steps", "0"],
     "expected a positive whole number, got '0'"),
    (lambda tmp: ["train-vdm", "--out", str(tmp / "file.txt")], "is a file; expected a folder to write into"),
    (lambda tmp: ["train-vdm", "--out", str(tmp / "o"), "--continue-from", str(tmp / "missing")], "no folder at"),
    (lambda tmp: ["train-vdm", "--out", str(tmp / "o"), "--checkpoint-dir", str(tmp / "file.txt")], "is a file"),
    (lambda tmp: ["generate", "--config", "sd15", "--prompt", "x", "--out", str(tmp / "x.txt")], "must end in .png"),
    (lambda tmp: ["demo", "--out", str(tmp / "file.txt")], "is a file; expected a folder to write into"),
])
def test_a_wrong_path_is_named_by_argparse(tmp_path, capsys, make_args, message):
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(make_args(tmp_path))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_error_raised_by_the_command_is_one_line_on_stderr(tmp_path):
    (tmp_path / "weights").mkdir()  # a folder that is not a diffusers pipeline
    result = subprocess.run([sys.executable, "-m", "minivdm", "generate", "--config", "sd15", "--prompt", "x",
                             "--weights", str(tmp_path / "weights"), "--out", str(tmp_path / "x.png"), "--device", "cpu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("minivdm generate: error:") and "is not a diffusers pipeline folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_course_copies_the_notebooks_and_never_overwrites_a_learners_work(tmp_path, capsys):
    assert main(["course", str(tmp_path / "my_course")]) == 0
    tutorials = sorted(p.name for p in (tmp_path / "my_course" / "tutorials").glob("*.ipynb"))
    exercises = sorted(p.name for p in (tmp_path / "my_course" / "exercises").glob("*.ipynb"))
    assert tutorials and tutorials == exercises and not (tmp_path / "my_course" / "solutions").exists()
    answer = tmp_path / "my_course" / "exercises" / exercises[0]
    answer.write_text("my answers")
    assert main(["course", str(tmp_path / "my_course"), "--with-solutions"]) == 0
    assert answer.read_text() == "my answers"
    assert f"kept   {answer}" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "my_course" / "solutions").glob("*.ipynb")) == exercises
