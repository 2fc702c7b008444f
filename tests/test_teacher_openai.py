"""End-to-end tests of OpenAITeacher: the real openai client against a loopback fake server."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, Reply, chat_reply, error_reply, json_reply

from gcp.exceptions import TeacherError
from gcp.graph import ConceptGraph, ConceptNode
from gcp.teachers import (
    AnswerCache,
    OpenAITeacher,
    OpenAITeacherConfig,
    TextItem,
    teacher_from_config,
)

KEY = "sk-test-9f8e7d6c5b4a39281706fedcba"
VALID = {"praises": "yes", "tone": "positive", "verdict": "fresh"}
SMALL_GRAPH = {
    "task": "Decide whether a film review is positive (fresh) or negative (rotten).",
    "output": "verdict",
    "nodes": [
        {"name": "praises", "question": "Does the review praise the film?",
         "values": ["no", "yes"]},
        {"name": "tone", "question": "What is the overall tone?",
         "values": ["positive", "negative", "mixed"]},
        {"name": "verdict", "question": "Is the verdict fresh or rotten?",
         "values": ["fresh", "rotten"]},
    ],
    "edges": [["praises", "tone"], ["tone", "verdict"]],
}


@pytest.fixture
def server():
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def graph() -> ConceptGraph:
    return ConceptGraph.from_dict(SMALL_GRAPH)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "project.sqlite"


def make_teacher(server: FakeOpenAI, store: Path | None, **options) -> OpenAITeacher:
    settings = {
        "model": "gpt-4o-mini",
        "base_url": server.url,
        "timeout_s": 5.0,
        "concurrency": 1,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    settings.update(options)
    cache = AnswerCache.open(store) if store is not None else None
    return OpenAITeacher(OpenAITeacherConfig(**settings), api_key=KEY, cache=cache)


def items(n: int, prefix: str = "review") -> list[TextItem]:
    return [TextItem(f"{prefix}-{i}", f"{prefix} text number {i}") for i in range(n)]


def test_openai_valid_reply(server, graph, store):
    server.script(json_reply(VALID))
    teacher = make_teacher(server, store)

    batch = teacher.annotate(graph, items(1))

    annotation = batch.annotations[0]
    assert annotation.status == "ok"
    assert annotation.values == VALID
    assert annotation.source == "teacher"
    assert annotation.model == "gpt-4o-mini"
    assert annotation.prompt_version.startswith("annotate-v1-")
    assert json.loads(annotation.raw) == VALID
    assert annotation.cost == pytest.approx((100 * 0.15 + 20 * 0.60) / 1e6)
    assert (annotation.input_tokens, annotation.output_tokens) == (100, 20)
    assert batch.n_calls == 1
    request = server.requests[0]
    assert request.headers["authorization"] == f"Bearer {KEY}"
    fmt = request.response_format
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["tone"]["enum"] == ["positive", "negative", "mixed"]
    assert schema["required"] == ["praises", "tone", "verdict"]
    assert "review text number 0" in request.last_user_message
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["temperature"] == 0.0


def test_openai_missing_node_repaired(server, graph, store):
    server.script(json_reply({"praises": "yes", "verdict": "fresh"}), json_reply(VALID))
    teacher = make_teacher(server, store)

    batch = teacher.annotate(graph, items(1))

    annotation = batch.annotations[0]
    assert annotation.status == "ok"
    assert annotation.values == VALID
    assert annotation.n_calls == 2
    assert server.count == 2
    assert "missing key(s) ['tone']" in server.requests[1].last_user_message
    assert annotation.cost == pytest.approx(2 * (100 * 0.15 + 20 * 0.60) / 1e6)


def test_openai_invalid_value_repair_fails(server, graph, store):
    bad = {"praises": "yes", "tone": "maybe", "verdict": "fresh"}
    server.script(json_reply(bad), json_reply(bad))
    teacher = make_teacher(server, store)

    batch = teacher.annotate(graph, items(1))

    annotation = batch.annotations[0]
    assert annotation.status == "failed"
    assert annotation.error == (
        "invalid reply after one repair request: invalid value 'maybe' for 'tone': "
        "expected one of ['positive', 'negative', 'mixed']"
    )
    assert json.loads(annotation.raw) == bad
    assert annotation.values == {}
    assert server.count == 2
    assert teacher.cache.count_answers() == 0
    calls = teacher.cache.calls()
    assert [c["status"] for c in calls] == ["invalid", "invalid"]
    assert all("maybe" in c["raw"] for c in calls)


def test_openai_broken_json_repaired(server, graph, store):
    server.script(chat_reply('{"praises": "yes", "tone": '), json_reply(VALID))
    teacher = make_teacher(server, store)

    batch = teacher.annotate(graph, items(1))

    assert batch.annotations[0].status == "ok"
    assert "the reply is not valid JSON" in server.requests[1].last_user_message


def test_openai_refusal_fails_without_repair(server, graph, store):
    server.script(
        chat_reply(None, refusal="I can't help with that."),
        chat_reply("", finish_reason="content_filter"),
    )
    teacher = make_teacher(server, store)

    batch = teacher.annotate(graph, items(2))

    first, second = batch.annotations
    assert first.status == "failed"
    assert first.error == "the model refused: I can't help with that."
    assert second.status == "failed"
    assert second.error == "the model returned an empty reply (finish_reason 'content_filter')"
    assert server.count == 2
    assert [c["status"] for c in teacher.cache.calls()] == ["refused", "refused"]


def test_openai_429_honours_retry_after(server, graph, store, caplog):
    server.script(error_reply(429, "Rate limit reached", headers={"Retry-After": "1"}))
    teacher = make_teacher(server, store)

    with caplog.at_level(logging.WARNING, logger="gcp.teachers"):
        batch = teacher.annotate(graph, items(1))

    assert batch.annotations[0].status == "ok"
    assert batch.n_retries == 1
    assert server.count == 2
    waited = server.requests[1].time - server.requests[0].time
    assert waited >= 0.95
    assert "retry 1 of 4" in caplog.text
    assert "HTTP 429: rate limit or quota reached" in caplog.text


def test_openai_500_is_retried(server, graph, store):
    server.script(error_reply(500, "upstream crashed"))
    teacher = make_teacher(server, store)

    batch = teacher.annotate(graph, items(1))

    annotation = batch.annotations[0]
    assert annotation.status == "ok"
    assert annotation.n_calls == 2
    errors = [c for c in teacher.cache.calls() if c["status"] == "error"]
    assert len(errors) == 1
    assert errors[0]["error"] == "HTTP 500 (server message: upstream crashed)"


def test_openai_timeout_is_retried(server, graph, store):
    server.script(Reply(body=json_reply(VALID).body, delay_s=1.5))
    teacher = make_teacher(server, store, timeout_s=0.3)

    batch = teacher.annotate(graph, items(1))

    assert batch.annotations[0].status == "ok"
    assert server.count == 2
    errors = [c["error"] for c in teacher.cache.calls() if c["status"] == "error"]
    assert errors == ["request timed out after 0.3 s"]


def test_openai_retries_exhausted_text_fails_batch_continues(server, graph, store):
    server.script(*[error_reply(503, "overloaded")] * 3)
    teacher = make_teacher(server, store, max_retries=2)

    batch = teacher.annotate(graph, items(2))

    first, second = batch.annotations
    assert first.status == "failed"
    assert first.error == "HTTP 503 (server message: overloaded) (gave up after 2 retries)"
    assert second.status == "ok"
    assert batch.stopped_reason is None
    assert server.count == 4


def test_openai_retry_cap_stops_batch(server, graph, store):
    server.script(*[error_reply(500, "down")] * 2)
    teacher = make_teacher(server, store, max_batch_retries=1)

    batch = teacher.annotate(graph, items(3))

    assert batch.stopped_reason == "retry_cap"
    assert [a.status for a in batch.annotations] == ["failed", "skipped", "skipped"]
    assert batch.annotations[0].error == (
        "HTTP 500 (server message: down); not retried because this batch used all its 1 retries"
    )
    assert batch.annotations[1].error == "not sent: this batch used all its retries"
    assert server.count == 2


def test_openai_rejected_key_stops_batch(server, graph, store):
    server.script(error_reply(401, f"Incorrect API key provided: {KEY}."))
    teacher = make_teacher(server, store)

    batch = teacher.annotate(graph, items(3))

    assert batch.stopped_reason == "error"
    assert batch.error == (
        "HTTP 401: the API key was rejected; check the key "
        "(server message: Incorrect API key provided: ***.)"
    )
    assert [a.status for a in batch.annotations] == ["failed", "skipped", "skipped"]
    assert batch.annotations[2].error.startswith("not sent: HTTP 401")
    assert server.count == 1


def test_openai_json_schema_fallback_remembered(server, graph, store, caplog):
    server.script(error_reply(400, "response_format type 'json_schema' is not supported"))
    teacher = make_teacher(server, store)

    with caplog.at_level(logging.WARNING, logger="gcp.teachers"):
        first = teacher.annotate(graph, items(1, "first"))
        second = teacher.annotate(graph, items(1, "second"))

    assert first.annotations[0].status == "ok"
    assert second.annotations[0].status == "ok"
    assert server.count == 3
    assert server.requests[0].response_format["type"] == "json_schema"
    for request in server.requests[1:]:
        assert request.response_format == {"type": "json_object"}
        assert '"enum": ["positive", "negative", "mixed"]' in request.messages[0]["content"]
    assert caplog.text.count("rejected response_format json_schema") == 1


def test_openai_budget_cap_skips_rest(server, graph, store):
    prices = {"gpt-4o-mini": (10.0, 10.0)}
    teacher = make_teacher(server, store, prices=prices)
    texts = items(6)
    estimate = teacher.estimate_cost(graph, texts[:1]).cost
    actual = (100 + 20) * 10.0 / 1e6
    budget = 2 * actual + estimate + 1e-9  # room for exactly three texts

    batch = teacher.annotate(graph, texts, budget=budget)

    assert batch.stopped_reason == "budget"
    assert [a.status for a in batch.annotations] == ["ok"] * 3 + ["skipped"] * 3
    assert batch.annotations[3].error == "not sent: the budget of this batch is reached"
    assert batch.cost == pytest.approx(3 * actual)
    assert batch.cost <= budget
    assert server.count == 3


def test_openai_zero_budget_sends_nothing(server, graph, store):
    teacher = make_teacher(server, store, budget=0.0)

    batch = teacher.annotate(graph, items(2))

    assert [a.status for a in batch.annotations] == ["skipped", "skipped"]
    assert batch.stopped_reason == "budget"
    assert server.count == 0


def test_openai_estimate_cost_counts_cache(server, graph, store):
    teacher = make_teacher(server, store)
    texts = items(4)
    teacher.annotate(graph, texts[:1])

    estimate = teacher.estimate_cost(graph, texts)

    assert estimate.n_texts == 3
    assert estimate.n_cached == 1
    assert estimate.input_tokens > 3 * 100  # prompt + schema of three nodes per text
    assert estimate.cost == pytest.approx(
        (estimate.input_tokens * 0.15 + estimate.output_tokens * 0.60) / 1e6
    )


def test_openai_cache_second_run_makes_no_call(server, graph, store):
    texts = items(4)
    make_teacher(server, store).annotate(graph, texts)
    calls_after_first = server.count

    again = make_teacher(server, store).annotate(graph, texts)

    assert calls_after_first == 4
    assert server.count == 4
    assert again.n_calls == 0
    assert again.cost == 0
    assert all(a.cached and a.status == "ok" for a in again.annotations)
    assert again.annotations[0].values == {"praises": "no", "tone": "positive", "verdict": "fresh"}


def test_openai_graph_edit_asks_only_changed_nodes(server, graph, store):
    texts = items(3)
    teacher = make_teacher(server, store)
    teacher.annotate(graph, texts)
    edited = (
        graph.rename_node("praises", "lauds")
        .add_node(
            ConceptNode("sarcastic", "Is the review sarcastic?", ("no", "yes")),
            children=["tone"],
        )
        .set_question("verdict", "Would the critic recommend the film?")
    )
    server.reset()

    batch = teacher.annotate(graph=edited, items=texts)

    assert server.count == 3
    for request in server.requests:
        assert sorted(request.schema["properties"]) == ["sarcastic", "verdict"]
    assert batch.annotations[0].values == {
        "lauds": "no", "sarcastic": "no", "tone": "positive", "verdict": "fresh"
    }
    assert batch.annotations[0].cached is False


def test_openai_new_prompt_version_misses_cache(server, graph, store):
    texts = items(2)
    make_teacher(server, store).annotate(graph, texts)
    teacher = make_teacher(server, store)
    teacher.prompt_version = "annotate-v2-changed"

    teacher.annotate(graph, texts)

    assert server.count == 4


def test_openai_requested_nodes_only(server, graph, store):
    teacher = make_teacher(server, store)

    batch = teacher.annotate(graph, items(1), nodes=["tone"])

    assert batch.annotations[0].values == {"tone": "positive"}
    assert list(server.requests[0].schema["properties"]) == ["tone"]
    with pytest.raises(TeacherError, match=r"unknown node\(s\) \['nope'\] requested"):
        teacher.annotate(graph, items(1), nodes=["nope"])


def test_openai_concurrency_overlaps_requests(graph, store):
    with FakeOpenAI(latency_s=0.3) as slow:
        teacher = make_teacher(slow, store, concurrency=8)
        start = time.monotonic()
        batch = teacher.annotate(graph, items(8))
        elapsed = time.monotonic() - start

    assert len(batch.ok) == 8
    assert elapsed < 1.2  # 8 x 0.3 s = 2.4 s if the requests ran one after another


def test_openai_progress_callback(server, graph, store):
    seen = []
    teacher = make_teacher(server, store)
    teacher.annotate(graph, items(2)[:1])

    teacher.annotate(
        graph, items(2), on_progress=lambda done, total, info: seen.append((done, total))
    )

    assert seen == [(1, 2), (2, 2)]  # the cached text is reported before the first request


def test_openai_key_never_stored_logged_or_raised(server, graph, store, caplog):
    server.script(
        error_reply(500, f"boom for key {KEY}"),
        json_reply({"praises": "yes", "tone": "maybe", "verdict": "fresh"}),
        json_reply(VALID),
    )
    teacher = make_teacher(server, store)
    with caplog.at_level(logging.DEBUG):
        batch = teacher.annotate(graph, items(2))
        server.script(error_reply(401, f"Incorrect API key provided: {KEY}"))
        with pytest.raises(TeacherError) as raised:
            teacher.check_connection()
    teacher.cache.engine.dispose()

    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert len(batch.ok) == 2
    assert KEY not in str(raised.value)
    assert "***" in str(raised.value)
    assert KEY not in caplog.text
    assert KEY not in json.dumps(teacher.describe())
    assert KEY not in repr(teacher.chat)
    assert KEY not in json.dumps([a.to_dict() for a in batch.annotations])
    for path in store.parent.glob(store.name + "*"):
        assert KEY.encode() not in path.read_bytes(), path.name


def test_openai_propose_graph_cycle_repaired(server):
    cyclic = {
        "concepts": [
            {"name": "praise", "question": "Is there praise?", "values": ["no", "yes"]},
            {"name": "warmth", "question": "Is the tone warm?", "values": ["no", "yes"]},
            {"name": "label", "question": "Which label?", "values": ["fresh", "rotten"]},
        ],
        "edges": [["praise", "warmth"], ["warmth", "praise"], ["warmth", "label"]],
    }
    fixed = dict(cyclic, edges=[["praise", "warmth"], ["warmth", "label"]])
    server.script(json_reply(cyclic), json_reply(fixed))
    teacher = make_teacher(server, None)

    graph = teacher.propose_graph(
        "Decide whether a review is fresh or rotten.",
        ["fresh", "rotten"],
        ["A delight.", ("A chore.", "rotten")],
    )

    assert graph.names == ["praise", "warmth", "label"]
    assert graph.labels == ("fresh", "rotten")
    assert graph.edges == (("praise", "warmth"), ("warmth", "label"))
    assert server.count == 2
    assert "the graph has a cycle" in server.requests[1].last_user_message
    first_prompt = server.requests[0].first_user_message
    assert "A chore. (label: rotten)" in first_prompt
    assert server.requests[0].response_format["json_schema"]["name"] == "concept_graph"


def test_openai_propose_graph_rejected_after_repair(server):
    bad = {"concepts": [{"name": "x", "question": "?", "values": ["a", "b"]}], "edges": []}
    server.script(json_reply(bad), json_reply(bad))
    teacher = make_teacher(server, None)

    message = "invalid after one repair request: nodes \\['x'\\] have no path"
    with pytest.raises(TeacherError, match=message):
        teacher.propose_graph("Classify.", ["pos", "neg"], ["text"])


def test_openai_propose_graph_wrong_labels(server):
    reply = {
        "concepts": [
            {"name": "a", "question": "A?", "values": ["no", "yes"]},
            {"name": "label", "question": "Label?", "values": ["good", "bad"]},
        ],
        "edges": [["a", "label"]],
    }
    server.script(json_reply(reply), json_reply(reply))
    teacher = make_teacher(server, None)

    with pytest.raises(TeacherError, match="must be exactly the labels \\['pos', 'neg'\\]"):
        teacher.propose_graph("Classify.", ["pos", "neg"], ["text"])


def test_openai_check_connection(server, store):
    teacher = make_teacher(server, store)

    message = teacher.check_connection()

    assert message.startswith(f"Connected to {server.url}: model 'gpt-4o-mini' replied in")
    assert "response_format" not in server.requests[0].body
    assert teacher.cache.calls()[0]["kind"] == "check"


def test_openai_check_connection_unknown_model(server):
    server.script(error_reply(404, "The model `gpt-9` does not exist"))
    teacher = make_teacher(server, None, model="gpt-9")

    with pytest.raises(TeacherError, match="connection check failed: HTTP 404: model 'gpt-9'"):
        teacher.check_connection()


def test_openai_check_connection_refused():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = OpenAITeacherConfig(base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2)
    teacher = OpenAITeacher(config, api_key=KEY)

    message = "connection check failed: could not connect to http://127.0.0.1"
    with pytest.raises(TeacherError, match=message):
        teacher.check_connection()


def test_openai_missing_key_for_openai(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    message = "no API key for the OpenAI teacher: set the OPENAI_API_KEY"
    with pytest.raises(TeacherError, match=message):
        OpenAITeacher(OpenAITeacherConfig(model="gpt-4o-mini"))


def test_openai_key_from_environment(server, graph, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    teacher = OpenAITeacher(OpenAITeacherConfig(base_url=server.url))

    teacher.annotate(graph, items(1))

    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_openai_config_round_trip(server, store):
    teacher = make_teacher(server, store, prices={"my-model": (1.0, 2.0)}, budget=0.5)

    config = teacher.describe()
    rebuilt = teacher_from_config(config, api_key=KEY)

    assert config["kind"] == "openai"
    assert config["prices"] == {"my-model": [1.0, 2.0]}
    assert rebuilt.describe() == config
    assert json.loads(json.dumps(config)) == config


def test_openai_config_rejects_key_and_bad_options():
    with pytest.raises(TeacherError, match="must not contain 'api_key'"):
        teacher_from_config({"kind": "openai", "api_key": "sk-x"})
    with pytest.raises(TeacherError, match="invalid option in the 'openai' teacher config"):
        teacher_from_config({"kind": "openai", "modle": "gpt-4o"}, api_key="sk-x")
    with pytest.raises(TeacherError, match="invalid concurrency=0"):
        OpenAITeacherConfig(concurrency=0)
    with pytest.raises(TeacherError, match="unknown teacher kind 'claude'"):
        teacher_from_config({"kind": "claude"})


def test_openai_unknown_model_costs_zero_warns_once(server, graph, store, caplog):
    teacher = make_teacher(server, store, model="local-llama-test-only")

    with caplog.at_level(logging.WARNING, logger="gcp.teachers"):
        first = teacher.annotate(graph, items(2, "a"))
        second = teacher.annotate(graph, items(2, "b"))

    assert first.cost == 0
    assert second.cost == 0
    assert first.input_tokens == 200
    assert caplog.text.count("no price known for model 'local-llama-test-only'") == 1


def test_openai_reply_without_usage_is_estimated(server, graph, store):
    server.script(chat_reply(json.dumps(VALID), usage=False))
    teacher = make_teacher(server, store)

    annotation = teacher.annotate(graph, items(1)).annotations[0]

    assert annotation.status == "ok"
    assert annotation.input_tokens > 50  # about 4 characters per token of the prompt
    assert annotation.output_tokens == len(json.dumps(VALID)) // 4
    assert annotation.cost > 0


def test_openai_truncated_reply_says_so(server, graph, store):
    server.script(*[chat_reply('{"praises": "ye', finish_reason="length")] * 2)
    teacher = make_teacher(server, store)

    annotation = teacher.annotate(graph, items(1)).annotations[0]

    assert annotation.status == "failed"
    assert annotation.error.startswith(
        "invalid reply after one repair request: the reply is not valid JSON"
    )
    assert annotation.error.endswith("(the reply was cut off at the token limit)")


def test_openai_unwritable_cache_stops_batch(server, graph, store):
    AnswerCache.open(store).engine.dispose()  # create the tables
    read_only = AnswerCache.open(f"sqlite:///file:{store}?mode=ro&uri=true")
    teacher = make_teacher(server, None)
    teacher.cache = read_only

    batch = teacher.annotate(graph, items(2))

    first, second = batch.annotations
    assert first.status == "ok"  # the answer is returned even though it could not be stored
    assert second.status == "skipped"
    assert batch.stopped_reason == "error"
    assert batch.error.startswith("could not write to the answer cache: OperationalError")
    assert "readonly database" in batch.error
    assert server.count == 1


def test_openai_check_connection_server_error(server):
    server.script(error_reply(502, "bad gateway"))
    teacher = make_teacher(server, None)

    with pytest.raises(TeacherError) as raised:
        teacher.check_connection()

    assert str(raised.value) == "connection check failed: HTTP 502 (server message: bad gateway)"
    assert server.count == 1


def test_openai_repeated_text_sent_once(server, graph, store):
    texts = [TextItem("a", "same words"), TextItem("b", "same words"), TextItem("c", "other")]
    teacher = make_teacher(server, store, concurrency=3)

    batch = teacher.annotate(graph, texts)

    assert server.count == 2
    assert [a.text_id for a in batch.annotations] == ["a", "b", "c"]
    assert batch.annotations[1].values == batch.annotations[0].values
    assert batch.annotations[1].status == "ok"
    assert batch.annotations[1].cost == 0
    assert batch.n_calls == 2


def test_openai_propose_graph_refusal(server):
    server.script(chat_reply(None, refusal="I cannot describe my reasoning."))
    teacher = make_teacher(server, None)

    with pytest.raises(TeacherError, match="graph proposal failed: the model refused: I cannot"):
        teacher.propose_graph("Classify.", ["pos", "neg"], ["text"])


def test_openai_reply_that_is_not_a_completion(server, graph, store):
    server.script(Reply(body="<html>proxy login</html>"), Reply(body={"object": "error"}))
    teacher = make_teacher(server, store)

    batch = teacher.annotate(graph, items(3))

    first, second, third = batch.annotations
    assert first.status == "failed"
    assert first.error == (
        f"invalid response from {server.url}: "
        "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
    )
    assert second.error == (
        f"invalid response from {server.url}: ValueError: the reply has no 'choices'; "
        "is this an OpenAI-compatible server?"
    )
    assert third.status == "ok"


def test_openai_temperature_none_not_sent(server, graph):
    teacher = make_teacher(server, None, temperature=None)

    teacher.annotate(graph, items(1))

    assert "temperature" not in server.requests[0].body
