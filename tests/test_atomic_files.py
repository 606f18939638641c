"""Files are written whole or not at all (minivdm.io.atomic_files): the one helper every writer of user files uses."""

import pytest

from minivdm.io.atomic_files import write_atomically, write_bytes_atomically, write_text_atomically


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "gradebook.csv"
    path.write_text("old\n")

    def half_then_fail(temporary):
        temporary.write_text("new, but only ha")
        raise KeyboardInterrupt  # Ctrl-C in a notebook

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gradebook.csv"]


def test_writes_replace_the_file_make_folders_and_keep_line_endings(tmp_path):
    path = tmp_path / "a" / "b" / "table.csv"
    assert write_text_atomically(path, "x,y\r\n1,2\r\n") == path
    assert path.read_bytes() == b"x,y\r\n1,2\r\n"  # CSV's own line endings, not translated
    write_bytes_atomically(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.csv"]
