"""Teacher throughput: `OpenAITeacher` against a local fake server with fixed latency.

Every request to `tests.fake_openai.FakeOpenAI` waits `latency_s` before its reply, so the
ideal throughput at concurrency c is ``c / latency_s`` texts per second (one request per
text). The measured rate shows the client's own overhead: threads, JSON, retries, bookkeeping.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import ROOT, Timer


def run(*, quick: bool, **_: Any) -> dict[str, Any]:
    import sys

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from gcp.graph import ConceptGraph
    from gcp.teachers import TextItem
    from gcp.teachers.openai_teacher import OpenAITeacher, OpenAITeacherConfig
    from tests.fake_openai import FakeOpenAI

    graph = ConceptGraph.load(ROOT / "assets" / "demo" / "graph.json")
    latency = 0.05 if quick else 0.2
    levels = (1, 8) if quick else (1, 8, 32)
    rows = []
    for concurrency in levels:
        n = 4 * concurrency if quick else max(20, 10 * concurrency)
        items = [TextItem(id=f"t{i}", text=f"Review number {i}: a film that tries hard.") for i in range(n)]
        with FakeOpenAI(latency_s=latency) as server:
            teacher = OpenAITeacher(OpenAITeacherConfig(base_url=server.url, concurrency=concurrency,
                                                        max_retries=0), api_key="benchmark")
            with Timer() as t:
                batch = teacher.annotate(graph, items)
            requests = server.count
        ok = sum(a.status == "ok" for a in batch.annotations)
        ideal = concurrency / latency
        rows.append({"concurrency": concurrency, "texts": n, "ok": ok, "requests": requests,
                     "seconds": t.seconds, "texts_per_s": ok / t.seconds, "ideal_texts_per_s": ideal,
                     "efficiency": ok / t.seconds / ideal})
    return {"latency_s": latency, "runs": rows}
