"""Local acceptance statistics: counting, persistence, and never failing the server over a file."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from starcoder_ls.stats import Stats, format_summary, state_dir


def test_shown_accepted_and_rejected_are_counted_per_language(tmp_path: Path) -> None:
    stats = Stats.load(tmp_path / "stats.json")
    stats.shown("r1", "python", "return x")
    stats.shown("r2", "python", "pass")
    stats.shown("r3", "go", "return nil")
    stats.shown("r4", "", "x")
    assert stats.accepted("r1") is True
    assert stats.rejected("r2") is True
    assert stats.accepted("r3") is True
    assert stats.counts == {
        "python": {"shown": 2, "accepted": 1, "accepted_chars": 8, "rejected": 1},
        "go": {"shown": 1, "accepted": 1, "accepted_chars": 10},
        "unknown": {"shown": 1},
    }


def test_unknown_or_already_judged_request_ids_return_false(tmp_path: Path) -> None:
    stats = Stats.load(tmp_path / "stats.json")
    assert stats.accepted("nope") is False
    assert stats.rejected("nope") is False
    stats.shown("r1", "python", "abc")
    assert stats.accepted("r1") is True
    assert stats.accepted("r1") is False
    assert stats.rejected("r1") is False
    assert stats.counts["python"] == {"shown": 1, "accepted": 1, "accepted_chars": 3}


def test_counts_survive_a_reload_of_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "stats.json"
    first = Stats.load(path)
    first.shown("a", "rust", "fn main() {}")
    first.accepted("a")
    first.shown("b", "rust", "x")
    first.rejected("b")
    assert json.loads(path.read_text())["version"] == 1
    second = Stats.load(path)
    assert second.counts == first.counts
    second.shown("c", "rust", "y")
    assert Stats.load(path).counts["rust"]["shown"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["stats.json"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b"null", b'{"languages": [1]}'],
)
def test_a_corrupt_file_is_ignored_and_counting_starts_at_zero(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "stats.json"
    path.write_bytes(content)
    stats = Stats.load(path)
    assert stats.counts == {}
    stats.shown("r", "python", "x")
    assert Stats.load(path).counts == {"python": {"shown": 1}}


def test_non_numeric_counters_in_the_file_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"languages": {"go": {"shown": "many", "accepted": 2}, "x": 3}}))
    assert Stats.load(path).counts == {"go": {"accepted": 2}}


def test_an_unwritable_location_warns_once_and_keeps_counting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    stats = Stats.load(blocker / "stats.json")
    with caplog.at_level(logging.WARNING, logger="starcoder_ls.stats"):
        stats.shown("r1", "python", "x")
        stats.shown("r2", "python", "y")
        assert stats.accepted("r1") is True
    assert stats.counts["python"] == {"shown": 2, "accepted": 1, "accepted_chars": 1}
    warnings = [r for r in caplog.records if "cannot write statistics" in r.getMessage()]
    assert len(warnings) == 1


def test_without_a_path_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    stats = Stats()
    stats.shown("r", "python", "x")
    assert stats.accepted("r") is True
    assert list(tmp_path.iterdir()) == []
    assert stats.summary()["file"] is None


def test_state_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARCODER_LS_STATE_DIR", "/x/state")
    assert state_dir() == Path("/x/state")
    monkeypatch.delenv("STARCODER_LS_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", "/y")
    assert state_dir() == Path("/y/starcoder-ls")


def test_summary_gives_acceptance_rates(tmp_path: Path) -> None:
    stats = Stats.load(tmp_path / "stats.json")
    for i in range(4):
        stats.shown(f"p{i}", "python", "abcd")
    stats.accepted("p0")
    stats.rejected("p1")
    stats.shown("g", "go", "xy")
    stats.shown("j", "java", "z")
    stats.accepted("g")
    summary = stats.summary()
    assert summary["file"] == str(tmp_path / "stats.json")
    assert list(summary["languages"]) == ["go", "java", "python"]
    assert summary["languages"]["python"]["acceptance_rate"] == 0.25
    assert summary["languages"]["go"]["acceptance_rate"] == 1.0
    assert summary["languages"]["java"]["acceptance_rate"] == 0.0
    total = summary["total"]
    assert (total["shown"], total["accepted"], total["rejected"]) == (6, 2, 1)
    assert total["accepted_chars"] == 6
    assert total["acceptance_rate"] == round(2 / 6, 4)
    # The summary is a copy: the counters themselves carry no rate.
    assert "acceptance_rate" not in stats.counts["python"]


def test_an_empty_summary_has_zero_rate() -> None:
    summary = Stats().summary()
    assert summary["total"] == {"acceptance_rate": 0.0}
    assert list(format_summary(summary)) == ["shown 0, accepted 0, rejected 0 (acceptance 0.0%)"]


def test_format_summary_lines(tmp_path: Path) -> None:
    stats = Stats.load(tmp_path / "stats.json")
    stats.shown("a", "python", "return 1")
    stats.shown("b", "python", "x")
    stats.shown("c", "lua", "end")
    stats.accepted("a")
    stats.rejected("c")
    assert list(format_summary(stats.summary())) == [
        "shown 3, accepted 1, rejected 1 (acceptance 33.3%)",
        "  lua: shown 1, accepted 0, rejected 1, accepted characters 0",
        "  python: shown 2, accepted 1, rejected 0, accepted characters 8",
    ]


def test_a_save_delay_writes_changes_together_off_the_callers_thread(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    stats = Stats.load(path, save_delay_s=0.2)
    stats.shown("r1", "python", "x")
    stats.shown("r2", "python", "y")
    assert stats.accepted("r1") is True
    assert not path.exists()  # nothing written on the caller's thread
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert Stats.load(path).counts == {"python": {"shown": 2, "accepted": 1, "accepted_chars": 1}}


def test_flush_writes_a_delayed_change_at_once(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    stats = Stats.load(path, save_delay_s=60)
    stats.shown("r1", "go", "x")
    assert not path.exists()
    stats.flush()
    assert Stats.load(path).counts == {"go": {"shown": 1}}
    stats.flush()  # nothing pending: no error, no change
    assert Stats.load(path).counts == {"go": {"shown": 1}}
