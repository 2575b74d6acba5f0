"""Atomic writes: the target appears whole or not at all; no temporary file is left behind."""

from __future__ import annotations

import pytest

from dnas.atomic import atomic_path


def test_success_replaces_target(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_failure_keeps_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_foreign_file_tells_a_commands_own_output_from_anything_else(tmp_path):
    from dnas.atomic import foreign_file

    assert foreign_file(tmp_path / "none.csv", csv_columns=["a"]) is None
    (tmp_path / "d").mkdir()
    assert foreign_file(tmp_path / "d", csv_columns=["a"]) is None  # not a file: checked elsewhere
    ours = tmp_path / "ours.csv"
    ours.write_text("x, a ,b\n1,2,3\n")
    assert foreign_file(ours, csv_columns=["a", "b"]) is None
    assert "its first line: 'x, a ,b'" in foreign_file(ours, csv_columns=["a", "c"])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert foreign_file(empty, csv_columns=["a"]) == "an empty file"
    png = tmp_path / "p.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 8)
    assert foreign_file(png) is None
    assert foreign_file(ours) == "a file that is not a PNG image"


def test_files_written_as_a_pair_replace_their_targets_together(tmp_path):
    from dnas.atomic import atomic_paths

    a, b = tmp_path / "a.csv", tmp_path / "a.png"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(KeyboardInterrupt), atomic_paths(a, b) as (ta, tb):
        ta.write_text("new a")
        raise KeyboardInterrupt  # while the second is written
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    with atomic_paths(a, b) as (ta, tb):
        ta.write_text("new a")
        tb.write_text("new b")
        assert a.read_text() == "old a"  # nothing replaced until both are written
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.png"]


def test_write_problem_names_what_is_in_the_way(tmp_path, monkeypatch):
    from dnas.atomic import write_problem

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "d").mkdir()
    assert write_problem("new/deeper/out.csv") is None
    assert write_problem("new/run", directory=True) is None
    assert write_problem("d", directory=True) is None
    assert write_problem("notes.txt") is None  # a file is replaced (its own checks say if not)
    assert write_problem("notes.txt/sub/out.csv") == "notes.txt is a file, not a directory"
    assert write_problem("notes.txt", directory=True) == "notes.txt is a file, not a directory"
    assert write_problem(tmp_path / "notes.txt" / "x", directory=True) == (
        f"{tmp_path / 'notes.txt'} is a file, not a directory"
    )
    assert write_problem("d") == "d is a directory"
    monkeypatch.setattr("os.access", lambda path, mode: False)  # root writes anywhere: pretend
    assert write_problem("d/new/out.csv") == "d is not writable"
