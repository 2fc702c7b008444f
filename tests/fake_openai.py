"""A scripted OpenAI-compatible chat completions server on 127.0.0.1, for tests and benchmarks.

`FakeOpenAI` serves ``POST /v1/chat/completions`` from a thread per request. Each request
takes the next scripted `Reply` (or callable returning one) from a queue; when the queue is
empty it calls `default`, which by default answers every enum of the request's JSON schema
with its first value (`auto_answer`). The server records every request (path, lower-case
headers, JSON body) and counts replies that were fully delivered. It never contacts any
other host.

Example
-------
>>> with FakeOpenAI() as server:
...     server.script(chat_reply('{"tone": "positive"}'), error_reply(429, "slow down"))
...     # point the client at server.url
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted HTTP response."""

    status: int = 200  # HTTP status
    body: Any = None  # dict (sent as JSON) or str (sent as is)
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    delay_s: float = 0.0  # wait before answering (on top of the server latency)


@dataclass
class RecordedRequest:
    """A request as the server received it."""

    path: str  # e.g. "/v1/chat/completions"
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or the raw text if it was not JSON
    time: float  # time.monotonic() at arrival
    delivered: bool = False  # True once a 200 reply was fully written

    @property
    def messages(self) -> list[dict[str, str]]:
        return self.body.get("messages", []) if isinstance(self.body, dict) else []

    @property
    def last_user_message(self) -> str:
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else ""

    @property
    def first_user_message(self) -> str:
        users = [m["content"] for m in self.messages if m.get("role") == "user"]
        return users[0] if users else ""

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format") if isinstance(self.body, dict) else None

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema of the request: from response_format, else from the system prompt."""
        fmt = self.response_format or {}
        if fmt.get("type") == "json_schema":
            return fmt["json_schema"]["schema"]
        for message in self.messages:
            if message.get("role") == "system":
                start = message["content"].rfind('{"type": "object"')
                if start >= 0:
                    schema, _ = json.JSONDecoder().raw_decode(message["content"][start:])
                    return schema
        return None


Script = Reply | Callable[[RecordedRequest], Reply]


def chat_reply(
    content: str | None,
    *,
    refusal: str | None = None,
    finish_reason: str = "stop",
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    usage: bool = True,
    delay_s: float = 0.0,
) -> Reply:
    """Build a 200 ``chat.completion`` reply with one choice."""
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "fake-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
            }
        ],
    }
    if usage:
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return Reply(body=body, delay_s=delay_s)


def json_reply(values: dict[str, Any], **options: Any) -> Reply:
    """Build a 200 reply whose content is `values` as JSON."""
    return chat_reply(json.dumps(values), **options)


def error_reply(
    status: int, message: str, *, headers: dict[str, str] | None = None, delay_s: float = 0.0
) -> Reply:
    """Build an error reply with an OpenAI-style ``{"error": {...}}`` body."""
    body = {"error": {"message": message, "type": "fake_error", "param": None, "code": None}}
    return Reply(status=status, body=body, headers=dict(headers or {}), delay_s=delay_s)


def auto_answer(request: RecordedRequest) -> Reply:
    """Answer each enum of the request's schema with its first value; "OK" without a schema."""
    schema = request.schema
    if schema is None:
        return chat_reply("OK", prompt_tokens=12, completion_tokens=1)
    properties = schema.get("properties", {})
    values = {name: spec["enum"][0] for name, spec in properties.items() if "enum" in spec}
    return json_reply(values)


class FakeOpenAI:
    """A scripted OpenAI-compatible server on an ephemeral loopback port.

    Parameters
    ----------
    latency_s : float, default=0.0
        Delay added to every reply, e.g. to benchmark concurrency.
    default : callable, default=auto_answer
        Reply used when the script queue is empty.
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        default: Callable[[RecordedRequest], Reply] = auto_answer,
    ) -> None:
        self.latency_s = latency_s
        self.default = default
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Script] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, client_address: None  # clients time out
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Base URL for the openai client, ending in /v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        """Number of requests received so far."""
        with self._lock:
            return len(self.requests)

    @property
    def delivered(self) -> int:
        """Number of 200 replies fully written to a client."""
        with self._lock:
            return sum(r.delivered for r in self.requests)

    def script(self, *replies: Script) -> None:
        """Queue replies (or callables returning one) for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Forget recorded requests and queued replies."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            script = self._queue.popleft() if self._queue else self.default
        return script if isinstance(script, Reply) else script(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length).decode("utf-8")
                try:
                    body: Any = json.loads(raw)
                except json.JSONDecodeError:
                    body = raw
                request = RecordedRequest(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    time=time.monotonic(),
                )
                reply = fake._next_reply(request)
                time.sleep(fake.latency_s + reply.delay_s)
                payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
                data = payload.encode("utf-8")
                self.send_response(reply.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                if reply.status == 200:
                    with fake._lock:
                        request.delivered = True

        return Handler
