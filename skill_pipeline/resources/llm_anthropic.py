"""AnthropicLLM: Claude through the ``anthropic`` SDK — one Messages call per method, errors translated.

The SDK is imported only when the first client is built (and in ``_call``, by then already loaded),
so the offline path and ``import skill_pipeline.definitions`` never pay for it. What this module
adds to the SDK: forced tool use, explicit retries and timeouts, a cap on ``retry-after`` (the SDK
honours any), and errors re-raised as ``AnthropicCallError`` with the key scrubbed. The policy
around the calls (asking again, concurrency, slots) is ``core.scenario_writing``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
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
from skill_pipeline.models import LLMReply, ScenarioRequest, TokenUsage
from skill_pipeline.resources.llm import ScenarioLLM
from skill_pipeline.resources.redaction import redact

_anthropic_log = logging.getLogger(__name__)

# Statuses the SDK retries by itself (anthropic 2.13 ``_should_retry``): an error with one of these
# reached us only after ``max_retries`` more attempts.
_SDK_RETRIED_STATUSES = frozenset({408, 409, 429})

_TOOL_DESCRIPTIONS: dict[str, str] = {
    "record_scenarios": (
        "Record the scenarios written for this skill and difficulty: one entry per scenario, each a "
        "concrete situation with the concepts it tests and the difficulty asked for."
    ),
}


class AnthropicCallError(RuntimeError):
    """A Messages API call that failed after the SDK's own retries.

    Raised instead of the SDK's exception (and without chaining it) because the SDK's exception
    carries the HTTP request, whose headers hold the API key; Dagster serialises chained causes
    into the event log. The message keeps what is needed to act: status, error type, request id.
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


def _describe_sdk_error(exc: Exception, *, max_retries: int, secret: str) -> AnthropicCallError:
    """An ``AnthropicCallError`` saying what the service answered, with the key scrubbed."""
    status: int | None = getattr(exc, "status_code", None)
    error_type: str | None = getattr(exc, "type", None) if status is not None else None
    request_id: str | None = getattr(exc, "request_id", None)
    detail = getattr(exc, "api_message", None) or getattr(exc, "message", None) or str(exc)
    retried = status is None or status in _SDK_RETRIED_STATUSES or status >= 500
    what = f"HTTP {status} {error_type or 'error'}" if status is not None else type(exc).__name__
    tries = f"after {max_retries} retries" if retried else "(not retryable)"
    rid = f" [request-id {request_id}]" if request_id else ""
    message = f"Anthropic Messages API: {what} {tries}{rid}: {detail}"
    return AnthropicCallError(
        redact(message, secret)[:1000], status_code=status, error_type=error_type, request_id=request_id
    )


def _retry_after_seconds(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return None if parsed is None else float(email.utils.mktime_tz(parsed) - time.time())


def _retry_after_cap_hook(cap_seconds: float):
    """An httpx2 response hook that shortens a ``retry-after`` longer than ``cap_seconds``.

    The SDK sleeps for whatever ``retry-after`` says, without a bound; a rate limiter answering
    "come back in an hour" would park a worker thread (and the run) for that hour. Capped, the
    retries still back off, and if the limit persists the call fails within a known time.
    """

    def hook(response: Any) -> None:
        headers = response.headers
        millis = headers.get("retry-after-ms")
        if millis is not None:
            try:
                if float(millis) / 1000 > cap_seconds:
                    headers["retry-after-ms"] = str(int(cap_seconds * 1000))
            except ValueError:
                pass
        seconds = headers.get("retry-after")
        if seconds is not None:
            wait_for = _retry_after_seconds(seconds)
            if wait_for is not None and wait_for > cap_seconds:
                headers["retry-after"] = f"{cap_seconds:g}"

    return hook


class AnthropicLLM(ScenarioLLM):
    """Claude through the ``anthropic`` SDK, answering with forced tool use.

    Forced tool use (``tool_choice`` naming the one tool) makes the model answer with JSON that
    matches the tool's schema, so the parser rarely has to dig JSON out of prose; it still can,
    for a reply without a tool call. Transient failures (429 with ``retry-after``, 529, 5xx,
    timeouts) are retried by the SDK with its backoff; what is still failing after
    ``max_retries`` propagates and ``generate`` fails the run naming the service and the skill.
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
    max_retries: int = Field(
        default=4, ge=0, le=10, description="SDK retries of 408/409/429/5xx/timeouts (the SDK default is 2)"
    )
    max_retry_wait_seconds: float = Field(
        default=60, gt=0, le=600, description="longest wait honoured from a retry-after header (the SDK honours any)"
    )

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

                http_client = anthropic.DefaultHttpxClient(
                    event_hooks={"response": [_retry_after_cap_hook(self.max_retry_wait_seconds)]}
                )
                self._client = anthropic.Anthropic(
                    api_key=secret,
                    base_url=self.base_url,
                    max_retries=self.max_retries,
                    timeout=self.timeout_seconds,
                    http_client=http_client,
                )
            return self._client

    def teardown_after_execution(self, context: Any) -> None:
        """Close the connection pool when Dagster is done with this run's copy of the resource."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _call(
        self,
        prompt: str,
        tool_name: str,
        schema: dict[str, Any],
        max_tokens: int | None = None,
        description: str | None = None,
    ) -> LLMReply:
        """One Messages call that forces the model to answer through ``tool_name``.

        The reply text is the tool input as JSON; a reply without a tool call falls back to its
        text blocks (the parsers accept prose and code fences). No sampling parameters are sent:
        anthropic 2.13 has dropped them, variety comes from the prompt.
        """
        client = self._get_client()
        import anthropic  # loaded by _get_client already; here for the exception class

        tool = {
            "name": tool_name,
            "description": description or _TOOL_DESCRIPTIONS.get(tool_name, f"Record the answer as {tool_name}."),
            "input_schema": schema,
        }
        failure: AnthropicCallError | None = None
        try:
            message = client.messages.create(
                model=self.model,
                max_tokens=max_tokens or self.max_tokens,
                messages=[{"role": "user", "content": prompt}],
                tools=[tool],
                tool_choice={"type": "tool", "name": tool_name},
            )
        except anthropic.APIError as exc:
            failure = _describe_sdk_error(exc, max_retries=self.max_retries, secret=self._secret())
        if failure is not None:
            # Raised outside the ``except`` block so the SDK exception is not even the implicit context.
            raise failure

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
                "Anthropic reply cut at max_tokens=%d; what is complete is kept and the rest asked again",
                max_tokens or self.max_tokens,
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
