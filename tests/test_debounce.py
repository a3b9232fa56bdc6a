"""The adaptive debounce: how long an automatic request waits given typing pace and latency."""

from __future__ import annotations

import pytest

from starcoder_ls.debounce import Debouncer


def typed(
    d: Debouncer, gaps_ms: list[float], uri: str = "file:///a.py", start: float = 100.0
) -> float:
    """Requests for ``uri`` separated by ``gaps_ms`` on an explicit clock; the last time."""
    now = start
    d.note_request(uri, now=now)
    for gap in gaps_ms:
        now += gap / 1000
        d.note_request(uri, now=now)
    return now


def test_an_invoked_request_never_waits() -> None:
    d = Debouncer(150)
    typed(d, [400, 400])
    d.note_latency(2000)
    assert d.delay_ms(invoked=True) == 0.0


def test_without_history_the_wait_is_the_base() -> None:
    d = Debouncer(150)
    assert d.delay_ms(invoked=False) == 150.0
    d.note_request("file:///a.py", now=1.0)
    assert d.delay_ms(invoked=False) == 150.0


def test_a_zero_base_turns_debounce_off() -> None:
    d = Debouncer(0)
    typed(d, [300])
    assert d.delay_ms(invoked=False) == 0.0


def test_slow_typing_waits_past_the_usual_gap() -> None:
    d = Debouncer(150)
    typed(d, [200])
    assert d.delay_ms(invoked=False) == pytest.approx(260.0)


def test_fast_typing_keeps_the_base() -> None:
    d = Debouncer(150)
    typed(d, [60, 70, 50, 80])
    assert d.delay_ms(invoked=False) == 150.0


def test_the_typing_pace_is_a_moving_average() -> None:
    d = Debouncer(150)
    typed(d, [200, 300])
    assert d.delay_ms(invoked=False) == pytest.approx(1.3 * (0.8 * 200 + 0.2 * 300))


def test_a_slow_backend_raises_the_wait() -> None:
    d = Debouncer(150)
    d.note_latency(1000)
    assert d.delay_ms(invoked=False) == pytest.approx(250.0)
    d.note_latency(2000)
    assert d.delay_ms(invoked=False) == pytest.approx(0.25 * (0.8 * 1000 + 0.2 * 2000))


def test_a_fast_backend_does_not_lower_the_base() -> None:
    d = Debouncer(150)
    d.note_latency(20)
    assert d.delay_ms(invoked=False) == 150.0


@pytest.mark.parametrize(
    ("base", "gap", "latency", "cap"),
    [(150, 1500, None, 600.0), (100, None, 10_000, 400.0), (400, 1900, 8000, 1000.0)],
)
def test_the_wait_is_capped_at_four_times_base_and_one_second(
    base: int, gap: float | None, latency: float | None, cap: float
) -> None:
    d = Debouncer(base)
    if gap is not None:
        typed(d, [gap])
    if latency is not None:
        d.note_latency(latency)
    assert d.delay_ms(invoked=False) == cap


def test_pauses_longer_than_two_seconds_are_not_typing_pace() -> None:
    d = Debouncer(150)
    now = typed(d, [2500, 10_000])
    assert d.delay_ms(invoked=False) == 150.0
    typed(d, [200, 5000], start=now + 0.2)
    assert d.delay_ms(invoked=False) == pytest.approx(260.0)


def test_an_out_of_order_timestamp_is_not_a_gap() -> None:
    # Two threads may read the clock in one order and take the lock in the other.
    d = Debouncer(150)
    d.note_request("file:///a.py", now=5.0)
    d.note_request("file:///a.py", now=4.9)
    assert d.delay_ms(invoked=False) == 150.0
    d.note_request("file:///a.py", now=5.2)
    assert d.delay_ms(invoked=False) == pytest.approx(260.0)


def test_gaps_are_measured_per_document() -> None:
    d = Debouncer(150)
    d.note_request("file:///a.py", now=10.0)
    d.note_request("file:///b.py", now=10.1)
    assert d.delay_ms(invoked=False) == 150.0
    d.note_request("file:///a.py", now=10.3)
    assert d.delay_ms(invoked=False) == pytest.approx(390.0)


def test_a_forgotten_document_starts_over() -> None:
    d = Debouncer(150)
    d.note_request("file:///a.py", now=1.0)
    d.forget("file:///a.py")
    d.note_request("file:///a.py", now=1.2)
    assert d.delay_ms(invoked=False) == 150.0
