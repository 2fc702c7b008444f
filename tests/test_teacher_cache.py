"""Tests of the answer cache: keys, concurrency, and resuming a batch after SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fake_openai import FakeOpenAI, RecordedRequest, Reply, auto_answer, error_reply

from gcp.graph import ConceptNode
from gcp.hashing import text_hash
from gcp.teachers.cache import AnswerCache, CallRecord, node_key, teacher_answers

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys
from gcp.graph import ConceptGraph
from gcp.teachers import AnswerCache, OpenAITeacher, OpenAITeacherConfig, TextItem

url, store, n_texts = sys.argv[1], sys.argv[2], int(sys.argv[3])
graph = ConceptGraph.load("assets/demo/graph.json")
items = [TextItem(f"t{i:02d}", f"resume text {i:02d}") for i in range(n_texts)]
config = OpenAITeacherConfig(model="gpt-4o-mini", base_url=url, concurrency=2, timeout_s=30)
teacher = OpenAITeacher(config, api_key="sk-child", cache=AnswerCache.open(store))
batch = teacher.annotate(graph, items)
n_cached = sum(a.cached for a in batch.annotations)
print(json.dumps({"ok": len(batch.ok), "calls": batch.n_calls, "cached": n_cached}))
"""


def record(model: str = "m", **fields) -> CallRecord:
    return CallRecord(
        teacher="t", model=model, prompt_version="p", kind="annotate", status="ok", **fields
    )


def test_cache_node_key_ignores_name():
    node = ConceptNode("praises", "Does it praise?", ("no", "yes"))
    renamed = ConceptNode("lauds", "Does it praise?", ("no", "yes"))
    reworded = ConceptNode("praises", "Does it praise the film?", ("no", "yes"))
    reordered = ConceptNode("praises", "Does it praise?", ("yes", "no"))

    assert node_key(node) == node_key(renamed)
    assert node_key(node) != node_key(reworded)
    assert node_key(node) != node_key(reordered)


def test_cache_record_and_lookup(tmp_path):
    cache = AnswerCache.open(tmp_path / "store.sqlite")
    digest = text_hash("a text")
    cache.record_text(
        model="m", prompt_version="p", text_hash=digest,
        answers={"k1": ("tone", "positive"), "k2": ("verdict", "fresh")},
        calls=[record(text_hash=digest, raw='{"tone": "positive"}', cost=0.5)],
    )

    found = cache.lookup("m", "p", ["k1", "k2", "k3"], [digest, text_hash("other")])

    assert found == {(digest, "k1"): "positive", (digest, "k2"): "fresh"}
    assert cache.lookup("other-model", "p", ["k1"], [digest]) == {}
    assert cache.lookup("m", "p2", ["k1"], [digest]) == {}
    assert cache.count_answers() == 2
    assert cache.total_cost() == pytest.approx(0.5)
    assert cache.calls()[0]["raw"] == '{"tone": "positive"}'


def test_cache_overwrites_same_key(tmp_path):
    cache = AnswerCache.open(tmp_path / "store.sqlite")
    for value in ("no", "yes"):
        cache.record_text(model="m", prompt_version="p", text_hash="h",
                          answers={"k": ("n", value)}, calls=[record()])

    assert cache.lookup("m", "p", ["k"], ["h"]) == {("h", "k"): "yes"}
    assert cache.count_answers() == 1


def test_cache_lookup_many_texts_in_chunks(tmp_path):
    cache = AnswerCache.open(tmp_path / "store.sqlite")
    hashes = [text_hash(str(i)) for i in range(1200)]
    for digest in hashes[::100]:
        cache.record_text(model="m", prompt_version="p", text_hash=digest,
                          answers={"k": ("n", "yes")}, calls=[])

    found = cache.lookup("m", "p", ["k"], hashes)

    assert len(found) == 12


def test_cache_sqlite_uses_wal(tmp_path):
    cache = AnswerCache.open(tmp_path / "store.sqlite")

    with cache.engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()

    assert mode == "wal"


def test_cache_on_engine_from_caller(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shared.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE other_table (x INTEGER)")

    cache = AnswerCache(engine)

    names = set(sa.inspect(engine).get_table_names())
    assert {"teacher_answers", "teacher_calls", "other_table"} <= names
    assert cache.count_answers() == 0


def test_cache_concurrent_writers(tmp_path):
    cache = AnswerCache.open(tmp_path / "store.sqlite")

    def write(worker: int) -> None:
        for i in range(20):
            digest = text_hash(f"{worker}-{i}")
            cache.record_text(model="m", prompt_version="p", text_hash=digest,
                              answers={"k": ("n", "yes")}, calls=[record(text_hash=digest)])

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert cache.count_answers() == 160
    assert len(cache.calls()) == 160


def _text_number(request: RecordedRequest) -> str:
    match = re.search(r"resume text (\d+)", request.first_user_message)
    assert match is not None, request.first_user_message
    return match.group(1)


def _answered_texts(store: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{store}")
    try:
        with engine.connect() as conn:
            query = sa.select(sa.func.count(sa.distinct(teacher_answers.c.text_hash)))
            return int(conn.execute(query).scalar_one())
    except sa.exc.OperationalError:  # tables not created yet
        return 0
    finally:
        engine.dispose()


def _run_child(url: str, store: Path, n_texts: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(store), str(n_texts)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_cache_killed_batch_resumes_without_repeating(tmp_path):
    n_texts, answered_before_kill = 12, 5
    store = tmp_path / "store.sqlite"
    gate = threading.Event()
    lock = threading.Lock()
    received = [0]

    def first_run(request: RecordedRequest) -> Reply:
        # Answer the first five requests; hold later ones until the child is killed.
        with lock:
            number = received[0]
            received[0] += 1
        if number < answered_before_kill:
            return auto_answer(request)
        gate.wait(30)
        return error_reply(503, "the client was killed")

    with FakeOpenAI(latency_s=0.05, default=first_run) as server:
        child = _run_child(server.url, store, n_texts)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answered = _answered_texts(store)
            if answered == answered_before_kill and server.count > answered_before_kill:
                break
            assert child.poll() is None, child.communicate()
            time.sleep(0.05)
        delivered_before_kill = {_text_number(r) for r in server.requests if r.delivered}
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)
        first_run_requests = server.count
        server.default = auto_answer
        gate.set()

        rerun = _run_child(server.url, store, n_texts)
        out, err = rerun.communicate(timeout=60)
        second_run = server.requests[first_run_requests:]

    assert child.returncode == -signal.SIGKILL
    assert rerun.returncode == 0, err
    assert len(delivered_before_kill) == answered_before_kill
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"ok": n_texts, "calls": n_texts - answered_before_kill,
                      "cached": answered_before_kill}
    resent = [_text_number(r) for r in second_run]
    assert not set(resent) & delivered_before_kill
    assert sorted(resent) == sorted({f"{i:02d}" for i in range(n_texts)} - delivered_before_kill)
    assert _answered_texts(store) == n_texts
