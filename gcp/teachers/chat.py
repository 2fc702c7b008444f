"""One chat completion request with retries, structured output fallback and secret scrubbing.

`ChatClient` wraps the `openai` client with its own retry loop (the client's `max_retries`
is 0) so that each retry is counted against a per-batch `RetryBudget` and logged at
WARNING. It retries HTTP 408, 409, 429 and 5xx, timeouts and connection errors, with
exponential backoff and jitter, and honours ``Retry-After`` and ``retry-after-ms``. When a
server rejects ``response_format`` of type ``json_schema`` with HTTP 400 or 422, it switches
to JSON mode for the rest of its life. It does not validate reply content (see `replies`).
The API key never appears in its logs or error messages.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import openai

from gcp.exceptions import TeacherError
from gcp.teachers.prompts import response_format

logger = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429}  # plus every 5xx
FATAL_STATUS = {401, 403, 404}  # wrong key, no access, unknown model: every request would fail
MessagesFor = Callable[[bool], list[dict[str, str]]]  # json_schema supported -> messages


@dataclass(frozen=True)
class RetryPolicy:
    """Retry settings of `ChatClient`."""

    max_retries: int = 4  # retries of one request before the text fails
    backoff_base_s: float = 1.0  # first backoff; doubles with each retry
    backoff_max_s: float = 30.0  # maximum wait of one exponential backoff
    max_retry_after_s: float = 60.0  # longest Retry-After wait honoured


class RetryBudget:
    """A thread-safe count of retries left for one batch."""

    def __init__(self, cap: int | None) -> None:
        self.cap = cap  # None means unlimited
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Use one retry; return False (and use nothing) if the cap is reached."""
        with self._lock:
            if self.cap is not None and self.used >= self.cap:
                return False
            self.used += 1
            return True

    @property
    def exhausted(self) -> bool:
        """True once every retry of the budget is used."""
        with self._lock:
            return self.cap is not None and self.used >= self.cap


@dataclass(frozen=True)
class ChatReply:
    """A completed request: the message, token usage and the failed attempts before it."""

    content: str | None  # message content, None if the server sent none
    refusal: str | None  # message.refusal, if the model refused
    finish_reason: str | None  # "stop", "length", "content_filter", ...
    input_tokens: int  # usage.prompt_tokens (estimated if the server sent no usage)
    output_tokens: int  # usage.completion_tokens (estimated if the server sent no usage)
    latency_s: float  # wall time of the successful attempt
    attempt_errors: tuple[tuple[str, float], ...] = ()  # (error, latency) of failed attempts


class CallError(TeacherError):
    """A request failed after its retries, or cannot succeed at all."""

    def __init__(
        self,
        message: str,
        *,
        fatal: bool = False,
        retry_cap: bool = False,
        attempt_errors: Sequence[tuple[str, float]] = (),
    ) -> None:
        super().__init__(message)
        self.fatal = fatal  # True when every later request would fail the same way
        self.retry_cap = retry_cap  # True when the batch's retry budget ran out
        self.attempt_errors = tuple(attempt_errors)


@dataclass
class ChatClient:
    """A thread-safe OpenAI-compatible chat client with its own retry loop.

    Parameters
    ----------
    model : str
        Model name sent with each request.
    api_key : str or None
        API key; for a custom `base_url` a missing key is replaced by a placeholder,
        because local servers (vLLM, Ollama, llama.cpp, LM Studio) accept any key.
    base_url : str or None
        Server URL ending in ``/v1``; None means OpenAI (or ``OPENAI_BASE_URL``).
    temperature : float or None
        Sampling temperature; None leaves it out of the request, for models that reject it.
    timeout_s : float
        Timeout of one request in seconds.
    policy : RetryPolicy
    json_schema : bool
        Whether to ask for strict JSON schema output; turned off after the server rejects it.
    """

    model: str
    api_key: str | None = field(repr=False)  # never shown in repr, logs or errors
    base_url: str | None
    temperature: float | None = 0.0
    timeout_s: float = 60.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    json_schema: bool = True
    _client: Any = field(init=False, repr=False, default=None)
    _fallback_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        key = self.api_key
        if not key:
            if self.base_url is None:
                raise TeacherError(
                    "no API key for the OpenAI teacher: set the OPENAI_API_KEY environment "
                    "variable or enter a key, or set base_url to a local OpenAI-compatible server"
                )
            key = "not-needed"
        self._secrets = [s for s in (self.api_key,) if s]
        self._client = openai.OpenAI(
            api_key=key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0
        )

    @property
    def server(self) -> str:
        """The server URL, for messages."""
        return str(self._client.base_url).rstrip("/")

    def scrub(self, text: str) -> str:
        """Return `text` with every secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def complete(
        self,
        messages_for: MessagesFor,
        *,
        schema: dict[str, Any] | None,
        schema_name: str = "reply",
        budget: RetryBudget | None = None,
        text_id: str | None = None,
        max_retries: int | None = None,
    ) -> ChatReply:
        """Send one chat completion, retrying transient errors.

        Parameters
        ----------
        messages_for : callable
            ``messages_for(json_schema)`` builds the messages; it is called again after a
            fallback to JSON mode so that the schema can move into the prompt.
        schema : dict or None
            JSON schema of the reply; None sends no ``response_format``.
        budget : RetryBudget, optional
            Shared retry budget of the batch.
        text_id : str, optional
            Id of the text, for log messages.
        max_retries : int, optional
            Retries of this request; default ``policy.max_retries``.

        Raises
        ------
        CallError
            After the last retry, when the retry budget is used up, or at once for errors
            that retrying cannot fix (HTTP 400, 401, 403, 404, a refused schema in JSON mode).
        """
        errors: list[tuple[str, float]] = []
        retries = 0
        limit = self.policy.max_retries if max_retries is None else max_retries
        while True:
            use_schema = self.json_schema and schema is not None
            kwargs: dict[str, Any] = {
                "model": self.model,
                "messages": messages_for(use_schema),
            }
            if self.temperature is not None:
                kwargs["temperature"] = self.temperature
            if schema is not None:
                kwargs["response_format"] = response_format(
                    schema, name=schema_name, json_schema=use_schema
                )
            start = time.monotonic()
            try:
                completion = self._client.chat.completions.create(**kwargs)
                return self._reply(completion, kwargs["messages"], time.monotonic() - start, errors)
            except (openai.APIStatusError, openai.APIConnectionError) as err:
                errors.append((self.describe_error(err), time.monotonic() - start))
                if use_schema and _rejects_json_schema(err):
                    self._fall_back_to_json_mode(errors[-1][0])
                    continue
                self._check_retry(err, retries, limit, budget, errors)
                failure: Exception = err
            except (openai.OpenAIError, ValueError) as err:
                # HTTP 200 whose body is not a chat completion, e.g. an HTML page from a proxy.
                message = f"invalid response from {self.server}: {type(err).__name__}: {err}"
                errors.append((self.scrub(message[:300]), time.monotonic() - start))
                raise CallError(errors[-1][0], attempt_errors=errors) from None
            retries += 1
            delay = self._delay(failure, retries)
            logger.warning(
                "teacher request for text %r failed (%s); retry %d of %d in %.2f s",
                text_id, errors[-1][0], retries, limit, delay,
            )
            time.sleep(delay)

    def _check_retry(
        self,
        err: Exception,
        retries: int,
        limit: int,
        budget: RetryBudget | None,
        errors: list[tuple[str, float]],
    ) -> None:
        """Raise CallError unless `err` may be retried once more."""
        message = errors[-1][0]
        if not _retryable(err):
            raise CallError(message, fatal=_fatal(err), attempt_errors=errors) from None
        if retries >= limit:
            gave_up = f" (gave up after {retries} retries)" if retries else ""
            raise CallError(message + gave_up, attempt_errors=errors) from None
        if budget is not None and not budget.take():
            raise CallError(
                f"{message}; not retried because this batch used all its {budget.cap} retries",
                retry_cap=True,
                attempt_errors=errors,
            ) from None

    def describe_error(self, err: Exception) -> str:
        """Return a short, secret-free message for an openai exception."""
        if isinstance(err, openai.APITimeoutError):
            return f"request timed out after {self.timeout_s:g} s"
        if isinstance(err, openai.APIConnectionError):
            return f"could not connect to {self.server} ({type(err).__name__})"
        if isinstance(err, openai.APIStatusError):
            detail = _error_detail(err)
            hint = {
                401: "the API key was rejected; check the key",
                403: "the API key has no access to this model or project",
                404: f"model {self.model!r} or the endpoint was not found on {self.server}",
                429: "rate limit or quota reached",
            }.get(err.status_code, "")
            message = f"HTTP {err.status_code}" + (f": {hint}" if hint else "")
            if detail:
                message += f" (server message: {detail})"
            return self.scrub(message)
        return self.scrub(f"{type(err).__name__}: {err}")

    def _fall_back_to_json_mode(self, message: str) -> None:
        with self._fallback_lock:
            if self.json_schema:
                self.json_schema = False
                logger.warning(
                    "server %s rejected response_format json_schema (%s); using JSON mode "
                    "with the schema in the prompt from now on",
                    self.server, message,
                )

    def _delay(self, err: Exception, retry: int) -> float:
        waited = _retry_after_s(err)
        if waited is not None:
            return min(waited, self.policy.max_retry_after_s)
        backoff = min(self.policy.backoff_max_s, self.policy.backoff_base_s * 2 ** (retry - 1))
        return backoff * random.uniform(0.5, 1.0)

    def _reply(
        self,
        completion: Any,
        messages: list[dict[str, str]],
        latency: float,
        errors: list[tuple[str, float]],
    ) -> ChatReply:
        if not getattr(completion, "choices", None):
            raise ValueError("the reply has no 'choices'; is this an OpenAI-compatible server?")
        choice = completion.choices[0]
        message = choice.message
        content = getattr(message, "content", None)
        usage = getattr(completion, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            input_tokens, output_tokens = usage.prompt_tokens, usage.completion_tokens or 0
        else:
            # Servers without usage reports: fall back to the 4-characters-per-token estimate.
            input_tokens = sum(len(m["content"]) for m in messages) // 4
            output_tokens = len(content or "") // 4
        return ChatReply(
            content=content,
            refusal=getattr(message, "refusal", None),
            finish_reason=getattr(choice, "finish_reason", None),
            input_tokens=int(input_tokens),
            output_tokens=int(output_tokens),
            latency_s=latency,
            attempt_errors=tuple(errors),
        )


def _retryable(err: Exception) -> bool:
    if isinstance(err, openai.APIConnectionError):  # timeouts included
        return True
    status = getattr(err, "status_code", 0)
    return status in RETRY_STATUS or status >= 500


def _fatal(err: Exception) -> bool:
    return getattr(err, "status_code", 0) in FATAL_STATUS


def _rejects_json_schema(err: Exception) -> bool:
    if getattr(err, "status_code", 0) not in (400, 422):
        return False
    text = f"{err} {getattr(err, 'body', '')}".lower()
    return "json_schema" in text or "response_format" in text


def _error_detail(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or ""
        return str(message)[:300]
    if isinstance(body, str):
        return body[:300]
    return ""


def _retry_after_s(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    if response is None:
        return None
    headers = response.headers
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
