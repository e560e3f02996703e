"""One rate limiter per process for the LLM calls: a skill takes longer under a rate limit, it never fails.

Anthropic limits an organisation per minute in requests, input and output tokens, as refilled
buckets, and reports what is left on every response (``anthropic-ratelimit-{requests,input-tokens,
output-tokens}-{limit,remaining,reset}``, reset in RFC 3339). Threads retrying on their own cannot
share a budget: all send, all get 429, all sleep the same ``retry-after``, all come back at once.
So every call of the process goes through one ``RateLimiter`` (``shared_limiter``), which

- admits a call when the request, output-token (``max_tokens`` reserved, settled with the real
  usage, as the API admits it) and input-token (estimated, settled) buckets have room and fewer
  than ``max_in_flight`` calls are out;
- sizes the buckets from the config and the headers (the smaller of the configured rate and
  ``share`` × the organisation's limit), and clamps what is left to what the service says is left;
- on a 429 pauses every call for ``retry-after`` and drains the request bucket, so what follows is
  paced by the refill; the rejected call waits ``retry-after`` plus full jitter, then queues again;
- retries rate limits and overload until a time deadline, not a count; server errors and broken
  connections up to a count (a persistent 500 is a fault, not a queue); a 4xx fails at once.

Pure: no Dagster, no SDK. An adapter hands ``run`` a function making one attempt, which returns a
``Reply`` or raises ``AttemptError`` naming the kind of failure (``classify_status``). The clock is
injected, so the unit tests run without sleeping.
"""

from __future__ import annotations

import email.utils
import math
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Callable, Generic, Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

FailureKind = Literal["rate_limited", "overloaded", "transient", "connection", "fatal"]
# Failures that mean "the service has no room for you now": retried until the deadline.
THROTTLED: frozenset[str] = frozenset({"rate_limited", "overloaded"})
# Failures that may be a fault on the other side: retried up to ``max_error_retries`` (and the deadline).
ERRORS: frozenset[str] = frozenset({"transient", "connection"})
_FAILURE_COUNTERS = {
    "rate_limited": "rate_limited", "overloaded": "overloaded", "transient": "server_errors", "connection": "connection_errors"
}  # fmt: skip

HEADER_PREFIX = "anthropic-ratelimit-"
# bucket name -> the word Anthropic's headers use for it. ``tokens-*`` (input and output combined,
# the most restrictive) is not tracked: the two it combines are.
HEADER_KINDS: dict[str, str] = {"requests": "requests", "input_tokens": "input-tokens", "output_tokens": "output-tokens"}


class RateLimitConfig(BaseModel):
    """How much of the organisation's Anthropic budget this process may use, and how long to keep trying."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests_per_minute: int = Field(0, ge=0, le=1_000_000, description=(
        "requests per minute this process may send (your tier's RPM x rate_limit_share); "
        "0: not configured, learnt from the anthropic-ratelimit-requests-* response headers"))
    output_tokens_per_minute: int = Field(0, ge=0, le=100_000_000, description=(
        "output tokens per minute (OTPM, the limit that binds for scenario writing); each call reserves "
        "its max_tokens until its real usage is known; 0: learnt from the response headers"))
    input_tokens_per_minute: int = Field(0, ge=0, le=1_000_000_000, description=(
        "input tokens per minute (ITPM), estimated from the prompt before a call, settled after; "
        "0: learnt from the response headers"))
    max_in_flight: int = Field(32, ge=1, le=1024, description=(
        "LLM calls in flight at once across the whole process (every thread, run and resource)"))
    share: float = Field(1.0, gt=0, le=1, description=(
        "fraction of the organisation's limits (as reported by the headers) this process may use: "
        "1 / the number of processes calling at once, e.g. the Dagster pool's slots"))
    burst_seconds: float = Field(10.0, ge=1, le=60, description=(
        "seconds of the per-minute budget that may go out at once; the API refills continuously and "
        "may reject a minute's budget sent in one burst"))
    retry_deadline_seconds: float = Field(1800.0, ge=1, le=86_400, description=(
        "how long a call keeps retrying after its first failure (429, 529, 5xx, connection) before it "
        "fails; time-based so a rate limit makes the run longer, not failed"))
    max_retry_wait_seconds: float = Field(60.0, gt=0, le=600, description=(
        "longest single wait honoured from a retry-after header (the SDK honours any)"))
    max_error_retries: int = Field(6, ge=0, le=100, description=(
        "retries of a server error (5xx other than 529, 408, 409), timeout or broken connection; "
        "429 and 529 are retried until retry_deadline_seconds instead"))
    backoff_initial_seconds: float = Field(0.5, gt=0, le=60, description=(
        "jitter window of the first retry; doubles with every retry"))
    backoff_max_seconds: float = Field(30.0, gt=0, le=600, description=(
        "largest jitter window of a retry (the backoff stops doubling here)"))


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A successful attempt: its value, the tokens it really used, and the response headers."""

    value: T
    input_tokens: int = 0
    output_tokens: int = 0
    headers: Mapping[str, str] | None = None


class AttemptError(Exception):
    """One failed attempt, described without the SDK's exception (which may hold a key). ``run``
    re-raises the last one with ``retries``, ``waited_seconds`` and ``gave_up`` (``not retryable`` |
    ``retries`` | ``deadline``) filled in, so the adapter can say why in its own error."""

    def __init__(
        self, kind: FailureKind, message: str, *, status: int | None = None, error_type: str | None = None,
        request_id: str | None = None, retry_after: float | None = None, headers: Mapping[str, str] | None = None,
        exception_name: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status
        self.error_type, self.request_id, self.retry_after = error_type, request_id, retry_after
        self.headers, self.exception_name = headers or {}, exception_name
        self.retries, self.waited_seconds, self.gave_up = 0, 0.0, ""


def classify_status(status: int, should_retry: str | None = None) -> FailureKind:
    """What an HTTP error status means for retrying; ``x-should-retry`` from the server overrides."""
    if should_retry == "false":
        return "fatal"
    if status == 429:
        return "rate_limited"
    if status == 529:
        return "overloaded"
    if status in (408, 409) or status >= 500 or should_retry == "true":
        return "transient"
    return "fatal"


def parse_retry_after(headers: Mapping[str, str], *, wall: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date), or None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    millis, value = _number(lowered.get("retry-after-ms")), lowered.get("retry-after")
    if millis is not None:
        return millis / 1000
    if value is None or _number(value) is not None:
        return _number(value)
    parsed = email.utils.parsedate_tz(value)
    wall = time.time() if wall is None else wall
    return None if parsed is None else max(0.0, float(email.utils.mktime_tz(parsed)) - wall)


def _seconds_until(stamp: str | None, wall: float) -> float | None:
    """Seconds from ``wall`` until an RFC 3339 time, or None when absent or unreadable."""
    try:
        moment = datetime.fromisoformat((stamp or "").strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return None if moment.tzinfo is None else max(0.0, moment.timestamp() - wall)


def _number(value: str | None) -> float | None:
    """A finite, non-negative number from a header, or None."""
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


class Clock:
    """Real time. Tests pass a clock whose ``sleep`` and ``wait`` advance a counter instead."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(timeout)


class _Bucket:
    """A continuously refilled budget per minute; a rate of 0 means "no bound known"."""

    def __init__(self) -> None:
        self.configured, self.share, self.burst_seconds = 0.0, 1.0, 10.0
        self.header_limit: float | None = None
        self.level: float | None = None  # None until a rate is known: then it starts full
        self.updated = self.blocked_until = 0.0

    @property
    def per_minute(self) -> float:
        rates = ([self.configured] if self.configured > 0 else []) + ([self.header_limit * self.share] if self.header_limit else [])
        return min(rates, default=0.0)

    @property
    def capacity(self) -> float:
        return max(1.0, self.per_minute * self.burst_seconds / 60)

    def refill(self, now: float) -> None:
        rate, elapsed, self.updated = self.per_minute, max(0.0, now - self.updated), now
        if rate <= 0:
            self.level = None
        else:
            self.level = self.capacity if self.level is None else min(self.capacity, self.level + elapsed * rate / 60)

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` can be taken (0: now). A cost above the capacity waits for a full bucket."""
        self.refill(now)
        if self.blocked_until > now:
            return self.blocked_until - now
        if self.level is None or self.level >= min(cost, self.capacity) - 1e-9:
            return 0.0
        return (min(cost, self.capacity) - self.level) * 60 / self.per_minute

    def take(self, amount: float) -> None:
        if self.level is not None:
            self.level -= amount

    def settle(self, unused: float, now: float) -> None:
        """Give back what a reservation did not use (negative: it used more than reserved)."""
        self.refill(now)
        if self.level is not None:
            self.level = min(self.capacity, self.level + unused)

    def clamp(self, remaining: float, now: float) -> None:
        self.refill(now)
        if self.level is not None:
            self.level = min(self.level, remaining)


@dataclass(frozen=True)
class LimiterStats:
    """Counters of one limiter, for metadata: a snapshot, or with ``since`` the part of one piece of work."""

    calls: int = 0  # attempts sent
    succeeded: int = 0
    failed: int = 0  # calls given up on (retries spent, deadline, not retryable)
    retries: int = 0
    # failed attempts: 429, 529, other retryable statuses, timeouts and broken connections
    rate_limited: int = 0
    overloaded: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    queue_wait_seconds: float = 0.0  # waiting for room in the buckets / in flight
    retry_wait_seconds: float = 0.0  # backing off between attempts
    max_in_flight: int = 0  # the most at once over the limiter's life
    in_flight: int = 0
    requests_per_minute: float = 0.0  # the effective bounds now (0: none known)
    output_tokens_per_minute: float = 0.0
    input_tokens_per_minute: float = 0.0

    @property
    def waited_seconds(self) -> float:
        return self.queue_wait_seconds + self.retry_wait_seconds

    def since(self, earlier: LimiterStats) -> LimiterStats:
        """The counters accumulated after ``earlier``; peaks, current levels and bounds as they are now."""
        keep = {"max_in_flight", "in_flight", "requests_per_minute", "output_tokens_per_minute", "input_tokens_per_minute"}
        now, then = asdict(self), asdict(earlier)
        return LimiterStats(**{k: v if k in keep else v - then[k] for k, v in now.items()})

    def as_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "waited_seconds": self.waited_seconds}
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


@dataclass
class _Permit:
    input_tokens: float
    output_tokens: float


class RateLimiter:
    """The admission, pacing and retry policy shared by every LLM call of a process (thread-safe)."""

    def __init__(
        self, config: RateLimitConfig | None = None, *, clock: Clock | None = None, rng: Callable[[], float] | None = None
    ) -> None:
        self._clock, self._rng = clock or Clock(), rng or random.random
        self._cond = threading.Condition()
        self._buckets = {name: _Bucket() for name in HEADER_KINDS}
        self._in_flight, self._paused_until = 0, 0.0
        self._counts: dict[str, Any] = {f.name: 0 for f in fields(LimiterStats)}
        self._config = RateLimitConfig()
        self.configure(config or RateLimitConfig())

    @property
    def config(self) -> RateLimitConfig:
        return self._config

    def configure(self, config: RateLimitConfig) -> None:
        """Apply new bounds; calls waiting are re-examined against them."""
        with self._cond:
            now = self._clock.now()
            self._config = config
            for name, bucket in self._buckets.items():
                bucket.refill(now)
                bucket.configured = float(getattr(config, f"{name}_per_minute"))
                bucket.share, bucket.burst_seconds = config.share, config.burst_seconds
                bucket.refill(now)
            self._cond.notify_all()

    def run(self, attempt: Callable[[], Reply[T]], *, output_tokens: int, input_tokens: int = 0) -> Reply[T]:
        """Call ``attempt`` when there is room, and again after each retryable failure, until it succeeds.

        ``output_tokens`` (the call's ``max_tokens``) is reserved, ``input_tokens`` estimated; both
        are settled with the real usage. Raises the last ``AttemptError`` when it is not retryable,
        when server errors outlast ``max_error_retries``, or when the next wait would end after
        ``retry_deadline_seconds`` from the first failure."""
        retries = error_retries = 0
        first_failure_at, waited = None, 0.0
        while True:
            permit = self._acquire(float(output_tokens), float(input_tokens))
            try:
                reply = attempt()
            except AttemptError as failure:
                self._release(permit, failure.headers, used_input=0, used_output=0, failure=failure)
                now, config = self._clock.now(), self._config
                first_failure_at = now if first_failure_at is None else first_failure_at
                error_retries += failure.kind in ERRORS
                wait = self._backoff(failure, retries, config)
                gave_up = (
                    "not retryable" if failure.kind not in THROTTLED | ERRORS
                    else "retries" if failure.kind in ERRORS and error_retries > config.max_error_retries
                    else "deadline" if now + wait > first_failure_at + config.retry_deadline_seconds
                    else ""
                )  # fmt: skip
                if gave_up:
                    failure.retries, failure.waited_seconds, failure.gave_up = retries, waited, gave_up
                    self._count(failed=1)
                    raise
                retries += 1
                self._count(retries=1, retry_wait_seconds=wait)
                self._clock.sleep(wait)
                waited += wait
                continue
            except BaseException:
                # Outcome unknown (a bug, an interrupt): keep the whole reservation, count no success.
                self._release(permit, None, used_input=permit.input_tokens, used_output=permit.output_tokens, ok=False)
                raise
            self._release(permit, reply.headers, used_input=reply.input_tokens, used_output=reply.output_tokens)
            return reply

    def _admission_wait(self, now: float, permit: _Permit) -> float | None:
        """Seconds until this call may go (0: now; None: until another call finishes)."""
        if self._in_flight >= self._config.max_in_flight:
            return None
        wait = max(0.0, self._paused_until - now)
        costs = {"requests": 1.0, "input_tokens": permit.input_tokens, "output_tokens": permit.output_tokens}
        for name, bucket in self._buckets.items():
            wait = max(wait, bucket.wait_for(costs[name], now))
        return wait

    def _acquire(self, output_tokens: float, input_tokens: float) -> _Permit:
        permit = _Permit(input_tokens=input_tokens, output_tokens=output_tokens)
        with self._cond:
            queued_at = self._clock.now()
            while (wait := self._admission_wait(now := self._clock.now(), permit)) != 0:
                self._clock.wait(self._cond, wait)
            for name, cost in (("requests", 1.0), ("input_tokens", input_tokens), ("output_tokens", output_tokens)):
                self._buckets[name].take(cost)
            self._in_flight += 1
            counts = self._counts
            counts["calls"] += 1
            counts["queue_wait_seconds"] += now - queued_at
            counts["max_in_flight"] = max(counts["max_in_flight"], self._in_flight)
        return permit

    def _release(
        self, permit: _Permit, headers: Mapping[str, str] | None, *, used_input: float, used_output: float,
        failure: AttemptError | None = None, ok: bool = True,
    ) -> None:  # fmt: skip
        with self._cond:
            now = self._clock.now()
            self._in_flight -= 1
            self._buckets["output_tokens"].settle(permit.output_tokens - used_output, now)
            self._buckets["input_tokens"].settle(permit.input_tokens - used_input, now)
            if headers:
                self._observe(headers, now)
            if failure is None:
                self._counts["succeeded"] += ok
            elif failure.kind in _FAILURE_COUNTERS:
                self._counts[_FAILURE_COUNTERS[failure.kind]] += 1
            if failure is not None and failure.kind == "rate_limited":
                pause = min(failure.retry_after or 0.0, self._config.max_retry_wait_seconds)
                self._paused_until = max(self._paused_until, now + pause)
                self._buckets["requests"].clamp(0.0, now)
            self._cond.notify_all()

    def _observe(self, headers: Mapping[str, str], now: float) -> None:
        """Adopt what the service reports: its limits (× ``share``) and what is left of them."""
        lowered = {k.lower(): v for k, v in headers.items() if k.lower().startswith(HEADER_PREFIX)}
        wall = self._clock.wall()
        for name, word in HEADER_KINDS.items():
            bucket = self._buckets[name]
            limit = _number(lowered.get(f"{HEADER_PREFIX}{word}-limit"))
            remaining = _number(lowered.get(f"{HEADER_PREFIX}{word}-remaining"))
            if limit:
                bucket.refill(now)
                bucket.header_limit = limit
            if remaining is None:
                continue
            bucket.clamp(remaining, now)
            if remaining < 1 and bucket.per_minute <= 0:
                # Nothing left and no rate to pace by: wait for the reset the service announces.
                reset_in = _seconds_until(lowered.get(f"{HEADER_PREFIX}{word}-reset"), wall)
                if reset_in is not None:
                    bucket.blocked_until = max(bucket.blocked_until, now + min(reset_in, self._config.max_retry_wait_seconds))

    def _backoff(self, failure: AttemptError, retries: int, config: RateLimitConfig) -> float:
        """``retry-after`` (capped) plus full jitter over a window doubling with each retry: calls
        rejected together each wait a different time, so they do not come back together."""
        window = min(config.backoff_max_seconds, config.backoff_initial_seconds * 2 ** min(retries, 30))
        floor = min(failure.retry_after or 0.0, config.max_retry_wait_seconds)
        return floor + self._rng() * window

    def _count(self, **increments: float) -> None:
        with self._cond:
            for name, value in increments.items():
                self._counts[name] += value

    def stats(self) -> LimiterStats:
        with self._cond:
            rates = {f"{name}_per_minute": bucket.per_minute for name, bucket in self._buckets.items()}
            return LimiterStats(**{**self._counts, "in_flight": self._in_flight, **rates})


# -- one limiter per process and service account ----------------------------------------------

_LIMITERS: dict[str, RateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def shared_limiter(key: str, config: RateLimitConfig) -> RateLimiter:
    """The process's limiter for ``key`` (the adapter's hash of account and endpoint): every resource,
    run and thread of the account shares one budget; a different ``config`` replaces the bounds."""
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get(key)
        if limiter is None:
            limiter = _LIMITERS[key] = RateLimiter(config)
    if limiter.config != config:
        limiter.configure(config)
    return limiter


def _forget_limiters() -> None:
    """A forked child starts with fresh limiters: the parent's locks and counts are not its own."""
    global _LIMITERS_LOCK
    _LIMITERS.clear()
    _LIMITERS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_limiters)
