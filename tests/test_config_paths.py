"""Relative paths in a config file are relative to the file's directory (a SQLite store.url, usage.spill_path and
usage.journal_dir), checked from another working directory; and usage.retention_days."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelway.config import load_config, parse_config
from modelway.errors import ConfigError


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that is not the config file's."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class TestRelativePaths:
    def test_sqlite_url_spill_and_journal_are_relative_to_the_file(self, tmp_path: Path, elsewhere: Path) -> None:
        conf = tmp_path / "conf"
        cfg = load_config(
            write(
                conf / "gw.yaml",
                "store:\n  url: sqlite:///data/gw.db\nusage:\n  spill_path: spill/usage.jsonl\n  journal_dir: j\n",
            )
        )
        assert cfg.store.url == f"sqlite:///{conf}/data/gw.db"
        assert cfg.usage.spill_path == str(conf / "spill" / "usage.jsonl")
        assert cfg.usage.journal_path == str(conf / "j")

    def test_the_journal_beside_a_relative_spill_file_moves_with_it(self, tmp_path: Path, elsewhere: Path) -> None:
        cfg = load_config(write(tmp_path / "c" / "gw.yaml", "usage:\n  spill_path: s/usage.jsonl\n"))
        assert cfg.usage.journal_path == str(tmp_path / "c" / "s" / "modelway-usage-journal")

    def test_a_config_path_given_relative_is_taken_from_the_working_directory(self, elsewhere: Path) -> None:
        write(elsewhere / "sub" / "gw.yaml", "store:\n  url: sqlite+aiosqlite:///gw.db?timeout=3\n")
        cfg = load_config("sub/gw.yaml")
        assert cfg.store.url == f"sqlite+aiosqlite:///{elsewhere}/sub/gw.db?timeout=3"

    @pytest.mark.parametrize(
        "url",
        [
            "sqlite:////abs/gw.db",
            "sqlite:///:memory:",
            "sqlite://",
            "postgresql://u@h/db",
            "postgresql://u@h/relative?schema=s",
        ],
    )
    def test_absolute_memory_and_postgresql_urls_are_kept(self, tmp_path: Path, elsewhere: Path, url: str) -> None:
        assert load_config(write(tmp_path / "gw.yaml", f"store:\n  url: '{url}'\n")).store.url == url

    def test_defaults_and_absolute_paths_are_kept(self, tmp_path: Path, elsewhere: Path) -> None:
        cfg = load_config(write(tmp_path / "gw.yaml", f"usage:\n  journal_dir: {tmp_path / 'abs'}\n"))
        assert cfg.usage.spill_path == "modelway-usage-spill.jsonl"  # the default: the working directory's
        assert cfg.usage.journal_path == str(tmp_path / "abs")

    def test_a_path_from_the_environment_is_relative_to_the_file_too(self, tmp_path: Path, elsewhere: Path) -> None:
        path = write(tmp_path / "c" / "gw.yaml", "store:\n  url: ${DB:-sqlite:///x.db}\n")
        assert load_config(path, env={"DB": "sqlite:///y.db"}).store.url == f"sqlite:///{tmp_path}/c/y.db"
        assert load_config(path, env={}).store.url == f"sqlite:///{tmp_path}/c/x.db"

    def test_parse_config_alone_resolves_nothing(self) -> None:
        assert parse_config({"store": {"url": "sqlite:///x.db"}}).store.url == "sqlite:///x.db"

    def test_a_database_left_in_the_working_directory_is_named(
        self, tmp_path: Path, elsewhere: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        write(elsewhere / "gw.db", "")
        path = write(tmp_path / "c" / "gw.yaml", "store:\n  url: sqlite:///gw.db\n")
        with caplog.at_level(logging.WARNING, logger="modelway.config"):
            load_config(path)
        assert f"{elsewhere / 'gw.db'} exists" in caplog.text and str(tmp_path / "c") in caplog.text
        caplog.clear()
        write(tmp_path / "c" / "gw.db", "")  # both exist: the file's is the one, nothing to say
        load_config(path)
        assert caplog.text == ""

    def test_the_cli_from_another_directory_uses_the_files_database(self, tmp_path: Path, elsewhere: Path) -> None:
        conf = write(tmp_path / "conf" / "gw.yaml", "store:\n  url: sqlite:///state/gw.db\n")
        run = subprocess.run(
            [sys.executable, "-m", "modelway.cli", "keys", "create", "-c", str(conf), "--name", "a"],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            env={**os.environ},
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert (tmp_path / "conf" / "state" / "gw.db").exists()
        assert list(elsewhere.iterdir()) == []


class TestRetentionDays:
    def test_default_zero_and_whole_days(self) -> None:
        assert parse_config({}).usage.retention_days == 90
        assert parse_config({"usage": {"retention_days": 0}}).usage.retention_days == 0
        assert parse_config({"usage": {"retention_days": 1.5}}).usage.retention_days == 1.5

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (0.5, r"usage.retention_days: must be 0 \(keep the records forever\) or at least 1 \(got 0.5\)"),
            (-1, r"usage.retention_days: must be a non-negative number"),
            ("30", r"usage.retention_days: must be a non-negative number"),
            (True, r"usage.retention_days: must be a non-negative number"),
        ],
    )
    def test_bad_values(self, value: object, message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            parse_config({"usage": {"retention_days": value}})
