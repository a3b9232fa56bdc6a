"""API keys: the file's format, the environment variable, and the check itself."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from starcoder_ls.serve.auth import ApiKeyError, ApiKeys, parse_keys

KEY = "a" * 8 + "0123456789"


def test_file_format_comments_and_separators() -> None:
    text = f"# team keys\n{KEY}  # alice\n\n  b{KEY}, c{KEY}\nd#{KEY}\n"
    assert parse_keys(text, "keys") == [KEY, f"b{KEY}", f"c{KEY}", f"d#{KEY}"]


def test_short_keys_are_refused_without_repeating_them() -> None:
    with pytest.raises(ApiKeyError, match="line 2: a key has 7 characters") as info:
        parse_keys(f"{KEY}\nhunter2\n", "keys")
    assert "hunter2" not in str(info.value)


def test_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys"
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    monkeypatch.setenv("STARCODER_LS_API_KEYS", f"env{KEY}")
    keys = ApiKeys(path)
    assert keys.enabled and len(keys) == 2
    assert keys.check(f"Bearer {KEY}") is None
    assert keys.check(f"bearer   env{KEY} ") is None
    assert keys.check(None) is not None and "Bearer" in keys.check(None)  # type: ignore[operator]
    assert keys.check(f"Bearer {KEY}x") == "invalid API key"
    assert keys.check(f"Token {KEY}") == "the Authorization header must be `Bearer <key>`"
    assert keys.check("Bearer ") is not None


def test_no_keys_means_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STARCODER_LS_API_KEYS", raising=False)
    keys = ApiKeys(None)
    assert not keys.enabled
    assert keys.check(None) is None


def test_readable_file_warns_and_an_empty_one_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STARCODER_LS_API_KEYS", raising=False)
    path = tmp_path / "keys"
    path.write_text(KEY + "\n")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        ApiKeys(path)
    assert "chmod 600" in caplog.text
    assert KEY not in caplog.text
    path.write_text("# nothing yet\n")
    with pytest.raises(ApiKeyError, match="holds no key"):
        ApiKeys(path)


def test_a_broken_file_later_keeps_the_last_good_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STARCODER_LS_API_KEYS", raising=False)
    monkeypatch.setattr("starcoder_ls.serve.auth.RELOAD_EVERY_S", 0.0)
    path = tmp_path / "keys"
    path.write_text(KEY + "\n")
    keys = ApiKeys(path)
    path.write_text("short\n")
    os.utime(path, (1, 1))  # a different modification time, whatever the clock's resolution
    assert keys.check(f"Bearer {KEY}") is None
