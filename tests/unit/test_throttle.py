"""The pure failed-login counter: window, lockout, growing delay, forgetting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.throttle import Counter, Policy, after_failure, retry_after

T0 = datetime(2026, 4, 20, 8, 0, tzinfo=UTC)
POLICY = Policy(account_failures=5, ip_failures=20, window=timedelta(minutes=15))
MIN = timedelta(minutes=1)


def fail(times: int, start: datetime, step: timedelta = MIN,
         state: Counter | None = None) -> Counter | None:
    for i in range(times):
        state = after_failure(state, start + i * step, 5, POLICY)
    return state


def test_five_failures_within_the_window_lock_for_the_window() -> None:
    four = fail(4, T0)
    assert four is not None and (four.failures, four.locked_until) == (4, None)
    assert retry_after(four, T0 + 4 * MIN) == 0
    five = after_failure(four, T0 + 4 * MIN, 5, POLICY)
    assert five.locked_until == T0 + 4 * MIN + 15 * MIN
    assert retry_after(five, T0 + 4 * MIN) == 15 * 60
    assert retry_after(five, T0 + 18 * MIN + timedelta(seconds=59.5)) == 1  # rounded up
    assert retry_after(five, T0 + 19 * MIN) == 0


def test_failures_spread_wider_than_the_window_never_lock() -> None:
    state = fail(20, T0, step=4 * MIN)  # at most 4 in any 15 minutes... window restarts
    assert state is not None and state.locked_until is None


def test_the_second_lockout_lasts_twice_as_long_and_the_cap_holds() -> None:
    first = fail(5, T0)
    assert first is not None and first.locked_until is not None
    again = fail(5, first.locked_until, state=first)
    assert again is not None and again.lockouts == 2
    assert again.locked_until == first.locked_until + 4 * MIN + 30 * MIN
    state: Counter | None = again
    for _ in range(10):
        assert state is not None and state.locked_until is not None
        start = state.locked_until
        state = fail(5, start, state=state)
    assert state is not None and state.locked_until is not None
    assert state.locked_until - state.last_failure_at == POLICY.max_lock


def test_lockouts_are_forgotten_after_a_quiet_day() -> None:
    first = fail(5, T0)
    assert first is not None and first.locked_until is not None
    later = fail(5, T0 + timedelta(days=2), state=first)
    assert later is not None and later.lockouts == 1
    assert later.locked_until == T0 + timedelta(days=2) + 4 * MIN + 15 * MIN
