"""The process-wide LLM rate limiter (core.rate_limit), on an injected clock: no test sleeps for real
except the thread test, which asserts bounds, never durations."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime, timezone
from email.utils import format_datetime

import pydantic
import pytest

from skill_pipeline.core.rate_limit import (
    AttemptError,
    Clock,
    LimiterStats,
    RateLimitConfig,
    RateLimiter,
    Reply,
    classify_status,
    parse_retry_after,
    shared_limiter,
)


class FakeClock(Clock):
    """Time that moves only when the limiter sleeps or waits; a wait without a timeout would hang."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.epoch = 1_800_000_000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.epoch + self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        assert timeout is not None, "a single-threaded test would wait for a release forever"
        self.t += timeout


def limiter(clock: FakeClock, rng=lambda: 0.5, **config) -> RateLimiter:
    return RateLimiter(RateLimitConfig(**config), clock=clock, rng=rng)


def ok(clock: FakeClock, seen: list[float] | None = None, *, used_output: int = 0, headers=None):
    def attempt() -> Reply[str]:
        if seen is not None:
            seen.append(clock.t)
        return Reply("ok", input_tokens=10, output_tokens=used_output, headers=headers)

    return attempt


def failing(clock: FakeClock, failures: list[AttemptError], seen: list[float] | None = None):
    """An attempt that raises each of ``failures`` in turn, then succeeds."""
    queue = list(failures)

    def attempt() -> Reply[str]:
        if seen is not None:
            seen.append(clock.t)
        if queue:
            raise queue.pop(0)
        return Reply("ok")

    return attempt


def rate_limited(retry_after: float | None = 1.0) -> AttemptError:
    return AttemptError("rate_limited", "rate_limit_error", status=429, error_type="rate_limit_error", retry_after=retry_after)


# -- admission -----------------------------------------------------------------------------------


def test_requests_are_paced_at_the_configured_rate():
    clock = FakeClock()
    lim = limiter(clock, requests_per_minute=60, burst_seconds=1)  # one a second, no burst beyond one
    seen: list[float] = []
    for _ in range(5):
        lim.run(ok(clock, seen), output_tokens=100)
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert all(gap == pytest.approx(1.0) for gap in gaps)
    stats = lim.stats()
    assert (stats.calls, stats.succeeded, stats.retries) == (5, 5, 0)
    assert stats.queue_wait_seconds == pytest.approx(4.0)


def test_a_burst_goes_out_at_once_then_the_refill_paces():
    clock = FakeClock()
    lim = limiter(clock, requests_per_minute=600, burst_seconds=1)  # 10 a second, a burst of 10
    seen: list[float] = []
    for _ in range(13):
        lim.run(ok(clock, seen), output_tokens=1)
    assert seen[:10] == [1000.0] * 10
    assert [round(t - 1000.0, 6) for t in seen[10:]] == [0.1, 0.2, 0.3]


def test_output_tokens_are_reserved_from_max_tokens_and_settled_with_real_usage():
    clock = FakeClock()
    # 600 a minute, 10 s of burst: 100 tokens at once, 10 tokens a second.
    lim = limiter(clock, output_tokens_per_minute=600, burst_seconds=10)
    seen: list[float] = []
    lim.run(ok(clock, seen, used_output=10), output_tokens=100)  # reserves 100, gives 90 back
    lim.run(ok(clock, seen, used_output=100), output_tokens=90)  # goes at once; used 10 more than reserved
    lim.run(ok(clock, seen, used_output=0), output_tokens=100)  # 10 in debt: waits for 110 tokens
    assert seen[0] == seen[1] == 1000.0
    assert seen[2] - seen[1] == pytest.approx(11.0)


def test_a_reservation_larger_than_the_bucket_waits_for_a_full_bucket_not_forever():
    clock = FakeClock()
    lim = limiter(clock, output_tokens_per_minute=60, burst_seconds=10)  # capacity 10 tokens
    seen: list[float] = []
    lim.run(ok(clock, seen, used_output=2000), output_tokens=2000)
    lim.run(ok(clock, seen, used_output=5), output_tokens=2000)
    assert seen[0] == 1000.0
    assert seen[1] > seen[0]  # in debt after the first call, but it does come


def test_input_tokens_are_estimated_then_settled():
    clock = FakeClock()
    lim = limiter(clock, input_tokens_per_minute=600, burst_seconds=10)  # 100 at once, 10 a second
    seen: list[float] = []
    lim.run(ok(clock, seen), output_tokens=0, input_tokens=100)  # used 10: 90 back
    lim.run(ok(clock, seen), output_tokens=0, input_tokens=95)
    assert seen == [1000.0, 1000.5]


def test_an_unexpected_exception_propagates_and_frees_the_slot():
    clock = FakeClock()
    lim = limiter(clock, max_in_flight=1)

    def broken() -> Reply[str]:
        raise ValueError("bug")

    with pytest.raises(ValueError):
        lim.run(broken, output_tokens=10)
    assert lim.stats().in_flight == 0
    assert lim.run(ok(clock), output_tokens=10).value == "ok"


# -- retries -------------------------------------------------------------------------------------


def test_a_429_waits_retry_after_plus_full_jitter_and_the_window_doubles():
    clock = FakeClock()
    lim = limiter(clock, rng=lambda: 1.0, backoff_initial_seconds=0.5, backoff_max_seconds=30)
    seen: list[float] = []
    reply = lim.run(failing(clock, [rate_limited(2), rate_limited(2), rate_limited(2)], seen), output_tokens=10)
    assert reply.value == "ok"
    assert clock.sleeps == [2.5, 3.0, 4.0]  # 2 s retry-after + windows of 0.5, 1, 2 s (jitter at its top)
    stats = lim.stats()
    assert (stats.calls, stats.retries, stats.rate_limited, stats.succeeded, stats.failed) == (4, 3, 3, 1, 0)
    assert stats.retry_wait_seconds == pytest.approx(9.5)


def test_jitter_spreads_calls_rejected_together():
    clock = FakeClock()
    lim = RateLimiter(RateLimitConfig(), clock=clock)  # the real random
    waits = []
    for _ in range(40):
        clock.sleeps.clear()
        lim.run(failing(clock, [rate_limited(1)]), output_tokens=1)
        waits += clock.sleeps
    assert all(1.0 <= w <= 1.5 for w in waits)  # retry-after honoured, first window 0.5 s
    assert len({round(w, 3) for w in waits}) > 30  # not one instant for all
    assert max(waits) - min(waits) > 0.2


def test_a_429_pauses_every_call_and_drains_the_request_bucket():
    clock = FakeClock()
    lim = limiter(clock, requests_per_minute=600, burst_seconds=1, retry_deadline_seconds=1)
    # retry-after 3 > the 1 s deadline: this call gives up at once, without sleeping ...
    with pytest.raises(AttemptError):
        lim.run(failing(clock, [rate_limited(3)]), output_tokens=1)
    assert clock.sleeps == []
    # ... and the next call, another one, still waits out the pause and then a refill.
    seen: list[float] = []
    lim.run(ok(clock, seen), output_tokens=1)
    assert seen[0] - 1000.0 >= 3.0


def test_rate_limits_are_retried_until_the_deadline_not_a_small_count():
    clock = FakeClock()
    lim = RateLimiter(RateLimitConfig(retry_deadline_seconds=1800), clock=clock)
    always = [rate_limited(1)] * 10_000
    with pytest.raises(AttemptError) as info:
        lim.run(failing(clock, always), output_tokens=1)
    failure = info.value
    assert failure.gave_up == "deadline"
    assert failure.retries >= 50  # 1 s retry-after + a jitter window up to 30 s: ~100 in 30 min
    assert clock.t - 1000.0 <= 1800 + 1e-6  # never slept past the deadline
    assert failure.waited_seconds == pytest.approx(sum(clock.sleeps))
    assert lim.stats().failed == 1


def test_overload_is_retried_like_a_rate_limit():
    clock = FakeClock()
    lim = limiter(clock, max_error_retries=0)
    overloaded = AttemptError("overloaded", "Overloaded", status=529, error_type="overloaded_error")
    assert lim.run(failing(clock, [overloaded] * 5), output_tokens=1).value == "ok"
    assert lim.stats().overloaded == 5


def test_server_errors_back_off_exponentially_up_to_a_count():
    clock = FakeClock()
    lim = limiter(clock, rng=lambda: 1.0, max_error_retries=2, backoff_initial_seconds=0.5)
    error = AttemptError("transient", "Internal server error", status=500, error_type="api_error")
    with pytest.raises(AttemptError) as info:
        lim.run(failing(clock, [error] * 5), output_tokens=1)
    assert info.value.gave_up == "retries" and info.value.retries == 2
    assert clock.sleeps == [0.5, 1.0]
    assert lim.stats().server_errors == 3


def test_connection_errors_are_retried_then_succeed():
    clock = FakeClock()
    lim = limiter(clock, max_error_retries=3)
    broken = AttemptError("connection", "Connection error.", exception_name="APIConnectionError")
    assert lim.run(failing(clock, [broken, broken]), output_tokens=1).value == "ok"
    assert lim.stats().connection_errors == 2


def test_a_non_retryable_error_fails_at_once():
    clock = FakeClock()
    lim = limiter(clock)
    bad = AttemptError("fatal", "max_tokens: too large", status=400, error_type="invalid_request_error")
    seen: list[float] = []
    with pytest.raises(AttemptError) as info:
        lim.run(failing(clock, [bad], seen), output_tokens=1)
    assert info.value.gave_up == "not retryable" and info.value.status == 400
    assert seen == [1000.0] and clock.sleeps == []


@pytest.mark.parametrize(
    ("status", "should_retry", "kind"),
    [
        (429, None, "rate_limited"),
        (529, None, "overloaded"),
        (500, None, "transient"),
        (503, None, "transient"),
        (408, None, "transient"),
        (409, None, "transient"),
        (400, None, "fatal"),
        (401, None, "fatal"),
        (404, None, "fatal"),
        (413, None, "fatal"),
        (500, "false", "fatal"),
        (400, "true", "transient"),
    ],
)
def test_statuses_are_classified(status, should_retry, kind):
    assert classify_status(status, should_retry) == kind


def test_retry_after_forms():
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    now = 1_800_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 30, timezone.utc), usegmt=True)
    assert parse_retry_after({"retry-after": date}, wall=now) == pytest.approx(30, abs=1)


def test_a_retry_after_longer_than_the_cap_is_capped():
    clock = FakeClock()
    lim = limiter(clock, rng=lambda: 0.0, max_retry_wait_seconds=5)
    lim.run(failing(clock, [rate_limited(3600)]), output_tokens=1)
    assert clock.sleeps == [5.0]


# -- adapting to the service's headers -----------------------------------------------------------


def _headers(word: str, limit: int | None = None, remaining: int | None = None, reset: str | None = None) -> dict:
    out = {}
    if limit is not None:
        out[f"anthropic-ratelimit-{word}-limit"] = str(limit)
    if remaining is not None:
        out[f"anthropic-ratelimit-{word}-remaining"] = str(remaining)
    if reset is not None:
        out[f"Anthropic-RateLimit-{word.title()}-Reset"] = reset
    return out


def test_limits_are_learnt_from_headers_times_the_share_and_never_above_the_configured_rate():
    clock = FakeClock()
    lim = limiter(clock, share=0.5)
    assert lim.stats().requests_per_minute == 0  # nothing known: no bound yet
    lim.run(ok(clock, headers={**_headers("requests", 120, 119), **_headers("output-tokens", 16_000, 16_000)}), output_tokens=1)
    stats = lim.stats()
    assert (stats.requests_per_minute, stats.output_tokens_per_minute) == (60, 8000)

    lim.configure(RateLimitConfig(share=0.5, requests_per_minute=30))
    assert lim.stats().requests_per_minute == 30


def test_what_the_service_says_is_left_caps_what_the_limiter_thinks_is_left():
    clock = FakeClock()
    lim = limiter(clock, requests_per_minute=600, burst_seconds=6)  # 60 at once, 10 a second
    seen: list[float] = []
    lim.run(ok(clock, seen, headers=_headers("requests", 600, 0)), output_tokens=1)  # the organisation has none left
    lim.run(ok(clock, seen), output_tokens=1)
    assert seen[1] - seen[0] == pytest.approx(0.1)


def test_with_no_rate_known_an_exhausted_budget_waits_for_the_announced_reset():
    clock = FakeClock()
    lim = limiter(clock)
    reset = datetime.fromtimestamp(clock.wall() + 5, timezone.utc).isoformat().replace("+00:00", "Z")
    seen: list[float] = []
    lim.run(ok(clock, seen, headers=_headers("requests", remaining=0, reset=reset)), output_tokens=1)
    lim.run(ok(clock, seen), output_tokens=1)
    assert seen[1] - seen[0] == pytest.approx(5.0)


def test_headers_of_a_rejected_call_are_used_too():
    clock = FakeClock()
    lim = limiter(clock)
    rejection = AttemptError("rate_limited", "rate_limit_error", status=429, retry_after=1, headers=_headers("requests", 60, 0))
    lim.run(failing(clock, [rejection]), output_tokens=1)
    assert lim.stats().requests_per_minute == 60


# -- threads, sharing, configuration -------------------------------------------------------------


def test_calls_in_flight_never_exceed_the_bound_across_threads():
    lim = RateLimiter(RateLimitConfig(max_in_flight=3))
    level = peak = 0
    lock = threading.Lock()

    def attempt() -> Reply[str]:
        nonlocal level, peak
        with lock:
            level += 1
            peak = max(peak, level)
        time.sleep(0.02)
        with lock:
            level -= 1
        return Reply("ok")

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(lim.run(attempt, output_tokens=1).value)) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == ["ok"] * 12
    assert peak <= 3 and lim.stats().max_in_flight <= 3
    assert lim.stats().in_flight == 0


def test_one_limiter_per_key_in_the_process():
    key = f"test:{time.monotonic_ns()}"
    first = shared_limiter(key, RateLimitConfig(max_in_flight=4))
    assert shared_limiter(key, RateLimitConfig(max_in_flight=4)) is first
    again = shared_limiter(key, RateLimitConfig(max_in_flight=7))
    assert again is first and first.config.max_in_flight == 7  # the last configuration wins
    assert shared_limiter(key + "-other", RateLimitConfig()) is not first


def test_stats_since_an_earlier_snapshot():
    clock = FakeClock()
    lim = limiter(clock)
    lim.run(ok(clock), output_tokens=1)
    before = lim.stats()
    lim.run(failing(clock, [rate_limited(1)]), output_tokens=1)
    delta = lim.stats().since(before)
    assert (delta.calls, delta.retries, delta.rate_limited, delta.succeeded) == (2, 1, 1, 1)
    as_dict = delta.as_dict()
    assert as_dict["waited_seconds"] == pytest.approx(delta.queue_wait_seconds + delta.retry_wait_seconds, abs=1e-3)
    assert set(as_dict) >= {"calls", "retries", "rate_limited", "waited_seconds", "max_in_flight"}
    assert LimiterStats().calls == 0


def test_every_config_field_has_a_description_and_bounds():
    for name, info in RateLimitConfig.model_fields.items():
        assert info.description and len(info.description) > 20, name
        kinds = {type(m).__name__ for m in info.metadata}
        assert kinds & {"Ge", "Gt"} and "Le" in kinds, name
    with pytest.raises(pydantic.ValidationError):
        RateLimitConfig(max_in_flight=0)
    with pytest.raises(pydantic.ValidationError):
        RateLimitConfig(share=1.5)
    with pytest.raises(pydantic.ValidationError):
        RateLimitConfig(retry_deadline_seconds=0)
