"""The workbench home is private to its user: executed notebooks, the store and artifacts inside it
are out of other users' reach on a shared machine."""

import os
import stat

from workbench import paths


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_home_is_0700(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "deep" / "home"))
    old = os.umask(0o002)  # a permissive umask: the home ends up 0700 all the same
    try:
        home = paths.home()
    finally:
        os.umask(old)
    assert home.is_dir() and mode(home) == 0o700


def test_the_default_home_left_open_by_an_older_version_is_closed(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".workbench").mkdir(mode=0o755)
    (tmp_path / ".workbench").chmod(0o755)
    assert mode(paths.home()) == 0o700


def test_a_home_the_user_chose_is_left_as_it_is(tmp_path, monkeypatch):
    shared = tmp_path / "team"
    shared.mkdir()
    shared.chmod(0o775)
    monkeypatch.setenv("WORKBENCH_HOME", str(shared))
    assert mode(paths.home()) == 0o775
