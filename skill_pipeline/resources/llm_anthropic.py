"""AnthropicLLM: Claude through the ``anthropic`` SDK — one Messages call per method, errors translated.

The SDK is imported only when the first client is built (and in ``_call``, by then already loaded),
so the offline path and ``import skill_pipeline.definitions`` never pay for it. What this module
adds to the SDK: forced tool use, explicit timeouts, the SDK's own retries switched off so that
``core.rate_limit`` governs every attempt (one limiter per process and account, shared by every
thread and resource: admission by requests, tokens and calls in flight, retries with jitter until
a deadline), and errors re-raised as ``AnthropicCallError`` with the key scrubbed. The policy
around the calls (asking again, concurrency, slots) is ``core.scenario_writing``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
from typing import Any

from dagster import EnvVar
from pydantic import Field, PrivateAttr

from skill_pipeline.core.challenge_prompt import (
    CHALLENGE_TOOL_NAME,
    CHALLENGE_TOOL_SCHEMA,
    DIFFICULTY_JUDGE_SCHEMA,
    DIFFICULTY_JUDGE_TOOL_NAME,
    ChallengeRequest,
    DifficultyJudgeRequest,
    render_judge_prompt,
)
from skill_pipeline.core.generation import SCENARIO_TOOL_SCHEMA, build_scenario_prompt
from skill_pipeline.core.rate_limit import (
    AttemptError,
    RateLimitConfig,
    RateLimiter,
    Reply,
    classify_status,
    parse_retry_after,
    shared_limiter,
)
from skill_pipeline.models import LLMReply, ScenarioRequest, TokenUsage
from skill_pipeline.resources.llm import ScenarioLLM
from skill_pipeline.resources.redaction import redact

_anthropic_log = logging.getLogger(__name__)

_TOOL_DESCRIPTIONS: dict[str, str] = {
    "record_scenarios": (
        "Record the scenarios written for this skill and difficulty: one entry per scenario, each a "
        "concrete situation with the concepts it tests and the difficulty asked for."
    ),
}

# resource field -> RateLimitConfig field (the names differ where the resource's name came first).
_LIMIT_FIELDS: dict[str, str] = {
    "requests_per_minute": "requests_per_minute",
    "output_tokens_per_minute": "output_tokens_per_minute",
    "input_tokens_per_minute": "input_tokens_per_minute",
    "max_in_flight": "max_in_flight",
    "rate_limit_share": "share",
    "burst_seconds": "burst_seconds",
    "retry_deadline_seconds": "retry_deadline_seconds",
    "max_retry_wait_seconds": "max_retry_wait_seconds",
    "max_retries": "max_error_retries",
    "backoff_initial_seconds": "backoff_initial_seconds",
    "backoff_max_seconds": "backoff_max_seconds",
}


def _limit_field(name: str) -> Any:
    """A resource field with the default, bounds and description of ``RateLimitConfig.<name>``.

    One source of truth: the launchpad shows the same text and refuses the same values as the
    core's model, and the two cannot drift apart.
    """
    info = RateLimitConfig.model_fields[name]
    bounds = {
        attr: getattr(item, attr)
        for item in info.metadata
        for attr in ("ge", "gt", "le", "lt")
        if getattr(item, attr, None) is not None
    }
    return Field(default=info.default, description=info.description, **bounds)


class AnthropicCallError(RuntimeError):
    """A Messages API call that failed for good (not retryable, or still failing after its retries).

    Raised instead of the SDK's exception (and without chaining it) because the SDK's exception
    carries the HTTP request, whose headers hold the API key; Dagster serialises chained causes
    into the event log. The message keeps what is needed to act: status, error type, request id,
    and how long it was retried.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_type = error_type
        self.request_id = request_id


def _attempt_error(exc: Exception, *, secret: str) -> AttemptError:
    """What one failed attempt means for the limiter, from the SDK's exception (the key scrubbed)."""
    status: int | None = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    headers = {k.lower(): v for k, v in response.headers.items()} if response is not None else {}
    detail = redact(str(getattr(exc, "message", None) or exc), secret)[:600]
    if status is None:
        import anthropic

        kind = "connection" if isinstance(exc, anthropic.APIConnectionError) else "fatal"
        return AttemptError(kind, detail, exception_name=type(exc).__name__)
    return AttemptError(
        classify_status(status, headers.get("x-should-retry")),
        detail,
        status=status,
        error_type=getattr(exc, "type", None),
        request_id=getattr(exc, "request_id", None),
        retry_after=parse_retry_after(headers),
        headers=headers,
        exception_name=type(exc).__name__,
    )


def _describe_failure(failure: AttemptError, *, config: RateLimitConfig, secret: str) -> AnthropicCallError:
    """An ``AnthropicCallError`` saying what the service answered and why the limiter gave up."""
    status = failure.status
    what = f"HTTP {status} {failure.error_type or 'error'}" if status is not None else (failure.exception_name or "error")
    if failure.gave_up == "not retryable":
        tries = "(not retryable)"
    elif failure.gave_up == "deadline":
        tries = (
            f"after {failure.retries} retries over {failure.waited_seconds:.0f} s "
            f"(retry deadline {config.retry_deadline_seconds:g} s)"
        )
    else:
        tries = f"after {failure.retries} retries"
    rid = f" [request-id {failure.request_id}]" if failure.request_id else ""
    message = f"Anthropic Messages API: {what} {tries}{rid}: {failure.message}"
    return AnthropicCallError(
        redact(message, secret)[:1000], status_code=status, error_type=failure.error_type, request_id=failure.request_id
    )


class AnthropicLLM(ScenarioLLM):
    """Claude through the ``anthropic`` SDK, answering with forced tool use.

    Forced tool use (``tool_choice`` naming the one tool) makes the model answer with JSON that
    matches the tool's schema, so the parser rarely has to dig JSON out of prose; it still can,
    for a reply without a tool call. Every attempt goes through the process's rate limiter
    (``core.rate_limit``): a 429 or 529 is waited out (``retry-after`` plus jitter) until
    ``retry_deadline_seconds``, a 5xx or timeout is retried ``max_retries`` times, a 4xx fails at
    once; what still fails propagates and ``generate`` fails the run naming the service and the skill.
    """

    api_key: str = Field(
        default=...,
        repr=False,
        description="Anthropic API key; give it as EnvVar('ANTHROPIC_API_KEY'), never as a literal",
    )
    model: str = Field(default="claude-haiku-4-5-20251001", description="model id sent with every call")
    base_url: str | None = Field(
        default=None,
        description="API root; None means the SDK default (or ANTHROPIC_BASE_URL). Tests point it at a fake.",
    )
    max_tokens: int = Field(default=2000, ge=1, le=64_000, description="output-token ceiling of one call")
    timeout_seconds: float = Field(
        default=60, gt=0, le=600, description="per-attempt timeout (the SDK default is 600 s)"
    )
    # The limiter's bounds (core.rate_limit.RateLimitConfig); shared by every resource of the process
    # calling with the same key and base URL.
    requests_per_minute: int = _limit_field("requests_per_minute")
    output_tokens_per_minute: int = _limit_field("output_tokens_per_minute")
    input_tokens_per_minute: int = _limit_field("input_tokens_per_minute")
    max_in_flight: int = _limit_field("max_in_flight")
    rate_limit_share: float = _limit_field("share")
    burst_seconds: float = _limit_field("burst_seconds")
    retry_deadline_seconds: float = _limit_field("retry_deadline_seconds")
    max_retry_wait_seconds: float = _limit_field("max_retry_wait_seconds")
    max_retries: int = _limit_field("max_error_retries")
    backoff_initial_seconds: float = _limit_field("backoff_initial_seconds")
    backoff_max_seconds: float = _limit_field("backoff_max_seconds")

    _client: Any = PrivateAttr(default=None)
    _client_lock: Any = PrivateAttr(default_factory=threading.Lock)

    @property
    def generator(self) -> str:
        return "anthropic"

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def service(self) -> str:
        return "Anthropic"

    @property
    def output_ceiling(self) -> int:
        return self.max_tokens

    def _secret(self) -> str:
        """The key as a plain string; an unresolved ``EnvVar`` (resource used outside a run) is read here."""
        key = self.api_key
        if isinstance(key, EnvVar):
            key = key.get_value() or ""
        return str.__str__(key) if isinstance(key, str) else ""

    def _get_client(self) -> Any:
        """One SDK client per resource instance, built on first use.

        The client (and its connection pool) is shared by the worker threads of ``generate``; the
        lock makes sure two threads arriving together do not build two.
        """
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                secret = self._secret()
                if not secret:
                    raise AnthropicCallError("Anthropic: api_key is empty (set ANTHROPIC_API_KEY)")
                import anthropic

                # max_retries=0: the SDK would retry on its own, every thread at its own pace, and
                # sleep for any retry-after; the process's limiter decides instead.
                self._client = anthropic.Anthropic(
                    api_key=secret, base_url=self.base_url, max_retries=0, timeout=self.timeout_seconds
                )
            return self._client

    def teardown_after_execution(self, context: Any) -> None:
        """Close the connection pool when Dagster is done with this run's copy of the resource."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def rate_limit_config(self) -> RateLimitConfig:
        return RateLimitConfig(**{core: getattr(self, field) for field, core in _LIMIT_FIELDS.items()})

    def limiter(self) -> RateLimiter:
        """The limiter of this process for this key and endpoint, shared by every thread and resource.

        Keyed by a hash of key and base URL (the organisation's budget is per key, not per resource
        instance); the key itself is never kept as a name.
        """
        client = self._get_client()
        account = hashlib.sha256(f"{self._secret()}\0{client.base_url}".encode()).hexdigest()[:24]
        return shared_limiter(f"anthropic:{account}", self.rate_limit_config())

    def rate_limit_stats(self) -> dict[str, Any]:
        """The limiter's counters (calls, retries, 429s, waits, peak in flight, bounds) for metadata.

        Process-wide: take one before and one after a piece of work and use ``LimiterStats.since``
        (``limiter().stats()``) to get that work's share.
        """
        return self.limiter().stats().as_dict()

    def _call(
        self,
        prompt: str,
        tool_name: str,
        schema: dict[str, Any],
        max_tokens: int | None = None,
        description: str | None = None,
    ) -> LLMReply:
        """One Messages call that forces the model to answer through ``tool_name``, under the limiter.

        The reply text is the tool input as JSON; a reply without a tool call falls back to its
        text blocks (the parsers accept prose and code fences). No sampling parameters are sent:
        anthropic 2.13 has dropped them, variety comes from the prompt.
        """
        client = self._get_client()
        limiter = self.limiter()
        import anthropic  # loaded by _get_client already; here for the exception classes

        secret = self._secret()
        ceiling = max_tokens or self.max_tokens
        tool = {
            "name": tool_name,
            "description": description or _TOOL_DESCRIPTIONS.get(tool_name, f"Record the answer as {tool_name}."),
            "input_schema": schema,
        }
        # About four characters a token: good enough to pace by input tokens, settled after the call.
        input_estimate = (len(prompt) + len(json.dumps(tool))) // 4 + 16
        attempts = itertools.count()

        def attempt() -> Reply[Any]:
            failure: AttemptError | None = None
            try:
                raw = client.messages.with_raw_response.create(
                    model=self.model,
                    max_tokens=ceiling,
                    messages=[{"role": "user", "content": prompt}],
                    tools=[tool],
                    tool_choice={"type": "tool", "name": tool_name},
                    # The SDK no longer retries, so it would always say 0; the service sees retries.
                    extra_headers={"x-stainless-retry-count": str(next(attempts))},
                )
                message = raw.parse()
            except anthropic.APIError as exc:
                failure = _attempt_error(exc, secret=secret)
            if failure is not None:
                # Raised outside the ``except`` block so the SDK exception is not even the implicit context.
                raise failure
            return Reply(
                message,
                input_tokens=int(message.usage.input_tokens or 0),
                output_tokens=int(message.usage.output_tokens or 0),
                headers={k.lower(): v for k, v in raw.headers.items()},
            )

        error: AnthropicCallError | None = None
        try:
            message = limiter.run(attempt, output_tokens=ceiling, input_tokens=input_estimate).value
        except AttemptError as failure:
            error = _describe_failure(failure, config=limiter.config, secret=secret)
        if error is not None:
            raise error

        tool_inputs = [
            block.input
            for block in message.content
            if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == tool_name
        ]
        if tool_inputs:
            text = json.dumps(tool_inputs[0], ensure_ascii=False)
        else:
            text = "\n".join(getattr(block, "text", "") for block in message.content if getattr(block, "type", None) == "text")
            _anthropic_log.warning(
                "Anthropic reply without a %s tool call (stop_reason %s); parsing its text instead",
                tool_name,
                message.stop_reason,
            )
        if message.stop_reason == "max_tokens":
            _anthropic_log.warning(
                "Anthropic reply cut at max_tokens=%d; what is complete is kept and the rest asked again", ceiling
            )
        usage = TokenUsage(
            input_tokens=int(message.usage.input_tokens or 0), output_tokens=int(message.usage.output_tokens or 0)
        )
        _anthropic_log.debug(
            "Anthropic %s: %s, stop_reason %s, %d in / %d out tokens",
            tool_name,
            message.model,
            message.stop_reason,
            usage.input_tokens,
            usage.output_tokens,
        )
        return LLMReply(text=text, usage=usage, model=message.model or self.model, generator="anthropic")

    def write_scenarios(self, request: ScenarioRequest) -> LLMReply:
        return self._call(build_scenario_prompt(request), "record_scenarios", SCENARIO_TOOL_SCHEMA)

    def write_challenge(self, request: ChallengeRequest) -> LLMReply:
        return self._call(request.prompt, CHALLENGE_TOOL_NAME, CHALLENGE_TOOL_SCHEMA)

    def judge_difficulty(self, request: DifficultyJudgeRequest) -> LLMReply:
        return self._call(render_judge_prompt(request), DIFFICULTY_JUDGE_TOOL_NAME, DIFFICULTY_JUDGE_SCHEMA)
