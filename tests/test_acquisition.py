import json
import math

import numpy as np
import pytest
import torch

import gcp.acquisition as acquisition
from gcp.acquisition import (
    STRATEGIES,
    AcquisitionConfig,
    Candidate,
    criticality_weights,
    default_node_weights,
    get_strategy,
    seed_strategies,
    select_batch,
)
from gcp.acquisition import geometry, scoring
from gcp.exceptions import AcquisitionError, EmptyPoolError, GCPError
from gcp.graph import ConceptGraph, ConceptNode
from gcp.student import GCPStudent, LabelOnlyStudent, StudentConfig

torch.set_num_threads(2)

DIM = 16
ALL_STRATEGIES = list(STRATEGIES)
STUDENT_STRATEGIES = [name for name in ALL_STRATEGIES if name not in seed_strategies]


def node(name, values=("no", "yes")):
    return ConceptNode(name=name, question=f"Is it {name}?", values=values)


def tiny_graph():
    # a -> mid -> out, b -> out; mid has three values.
    return ConceptGraph(
        task="toy",
        output="out",
        nodes=[
            node("a"),
            node("b"),
            node("mid", ("low", "mid", "high")),
            node("out", ("neg", "pos")),
        ],
        edges=[("a", "mid"), ("mid", "out"), ("b", "out")],
    )


@pytest.fixture(scope="module")
def graph():
    return tiny_graph()


@pytest.fixture(scope="module")
def student(graph):
    return GCPStudent(graph, input_dim=DIM, config=StudentConfig(dropout=0.3), seed=0)


@pytest.fixture(scope="module")
def corpus():
    """100 texts: 20 labelled, 20 held out for evaluation, 60 in the pool."""
    rng = np.random.default_rng(7)
    embeddings = rng.normal(size=(100, DIM)).astype(np.float32)
    ids = [f"text-{i:03d}" for i in range(100)]
    return {
        "labelled_ids": set(ids[:20]),
        "eval_ids": set(ids[20:40]),
        "pool_ids": ids[40:],
        "pool": embeddings[40:],
        "labelled": embeddings[:20],
    }


def run(name, corpus, student, **kwargs):
    options = dict(
        pool_ids=corpus["pool_ids"],
        pool_embeddings=corpus["pool"],
        labelled_embeddings=corpus["labelled"],
        batch_size=10,
        student=student,
    )
    options.update(kwargs)
    return select_batch(name, **options)


# ---------------------------------------------------------------- contract of every strategy


@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_strategy_contract_batch(name, corpus, student):
    batch = run(name, corpus, student)
    ids = [c.text_id for c in batch]
    assert len(batch) == 10
    assert len(set(ids)) == 10
    assert set(ids) <= set(corpus["pool_ids"])
    assert not set(ids) & corpus["labelled_ids"]
    assert not set(ids) & corpus["eval_ids"]
    assert [c.rank for c in batch] == list(range(1, 11))
    assert all(isinstance(c, Candidate) and math.isfinite(c.score) for c in batch)
    json.dumps([c.to_dict() for c in batch])  # breakdowns are JSON-serializable


@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_strategy_contract_empty_pool(name, student):
    with pytest.raises(EmptyPoolError, match="the pool is empty"):
        select_batch(
            name,
            pool_ids=[],
            pool_embeddings=np.zeros((0, DIM), dtype=np.float32),
            labelled_embeddings=None,
            batch_size=3,
            student=student,
        )


@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_strategy_contract_clips_large_batch(name, corpus, student):
    with pytest.warns(UserWarning, match="batch_size 500 is larger than the pool of 60 texts"):
        batch = run(name, corpus, student, batch_size=500)
    assert sorted(c.text_id for c in batch) == sorted(corpus["pool_ids"])


@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_strategy_contract_deterministic(name, corpus, student):
    first = run(name, corpus, student, seed=3)
    second = run(name, corpus, student, seed=3)
    assert first == second


@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_strategy_contract_chunking(name, corpus, student):
    small = run(name, corpus, student, config=AcquisitionConfig(chunk_size=7))
    large = run(name, corpus, student, config=AcquisitionConfig(chunk_size=10_000))
    assert [c.text_id for c in small] == [c.text_id for c in large]
    np.testing.assert_allclose([c.score for c in small], [c.score for c in large], rtol=1e-5)


@pytest.mark.parametrize("name", ALL_STRATEGIES)
def test_strategy_repr_reads_like_constructor(name):
    strategy = get_strategy(name, config=AcquisitionConfig(beta=0.5))
    assert eval(repr(strategy), vars(acquisition)) == strategy
    assert repr(strategy).startswith(type(strategy).__name__ + "(config=AcquisitionConfig(")


@pytest.mark.parametrize("name", STUDENT_STRATEGIES)
def test_strategy_without_student_raises(name, corpus):
    with pytest.raises(AcquisitionError, match="needs a trained student: train one first, or use"):
        run(name, corpus, None)


@pytest.mark.parametrize("name", seed_strategies)
def test_seed_strategy_runs_without_student(name, corpus):
    assert len(run(name, corpus, None)) == 10


# ---------------------------------------------------------------- select_batch input checks


def test_select_batch_unknown_strategy(corpus, student):
    message = "unknown acquisition strategy 'foo'; valid strategies: random, least_confidence"
    with pytest.raises(GCPError, match=message):
        run("foo", corpus, student)


def test_select_batch_zero_batch_size(corpus, student):
    with pytest.raises(AcquisitionError, match="invalid batch_size 0: choose at least 1 text"):
        run("random", corpus, student, batch_size=0)


def test_select_batch_ids_rows_mismatch(corpus, student):
    message = "pool_ids has 59 ids but pool_embeddings has 60 rows"
    with pytest.raises(AcquisitionError, match=message):
        run("entropy", corpus, student, pool_ids=corpus["pool_ids"][:-1])


def test_select_batch_duplicate_ids(corpus, student):
    ids = list(corpus["pool_ids"])
    ids[5] = ids[4]
    with pytest.raises(AcquisitionError, match=r"duplicates \['text-044'\]"):
        run("random", corpus, student, pool_ids=ids)


def test_select_batch_nan_row(corpus, student):
    pool = corpus["pool"].copy()
    pool[12, 3] = np.nan
    with pytest.raises(AcquisitionError, match="pool_embeddings row 12 contains NaN"):
        run("coreset", corpus, student, pool_embeddings=pool)


def test_select_batch_labelled_dimension(corpus, student):
    with pytest.raises(AcquisitionError, match="labelled_embeddings have dimension 3"):
        run("coreset", corpus, student, labelled_embeddings=np.zeros((4, 3), dtype=np.float32))


def test_select_batch_negative_seed(corpus, student):
    with pytest.raises(AcquisitionError, match="invalid seed -1"):
        run("random", corpus, student, seed=-1)


def test_select_batch_stale_node_weights(corpus, student):
    with pytest.raises(AcquisitionError, match=r"unknown nodes \['gone'\]"):
        run("gcp", corpus, student, node_weights={"gone": 1.0, "a": 0.5})


def test_select_batch_progress_reaches_total(corpus, student):
    calls = []
    run("gcp", corpus, student, on_progress=lambda done, total, info: calls.append((done, total)))
    dones = [done for done, _ in calls]
    assert dones == sorted(dones)
    assert calls[-1][0] == calls[-1][1]


def test_random_seed_changes_batch(corpus):
    first = {c.text_id for c in run("random", corpus, None, seed=1)}
    second = {c.text_id for c in run("random", corpus, None, seed=2)}
    assert first != second


# ---------------------------------------------------------------- uncertainty math


def test_least_confidence_values():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]])
    np.testing.assert_allclose(scoring.least_confidence(probs), [0.1, 0.4, 0.5])
    assert geometry.top_k(scoring.least_confidence(probs), 2, np.arange(3)).tolist() == [2, 1]


def test_margin_values():
    probs = np.array([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25], [0.8, 0.1, 0.1]])
    np.testing.assert_allclose(scoring.margin(probs), [0.2, 0.05, 0.7])
    assert geometry.top_k(1 - scoring.margin(probs), 3, np.arange(3)).tolist() == [1, 0, 2]


def test_entropy_values():
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    np.testing.assert_allclose(scoring.entropy(probs), [math.log(4), 0.0, math.log(2)])
    np.testing.assert_allclose(scoring.entropy(probs, normalize=True), [1.0, 0.0, 0.5])


def test_mutual_information_constructed_samples():
    # Text 0: every sample predicts 50/50 (noise, no disagreement). Text 1: samples disagree
    # fully. Text 2: every sample is confident.
    mc = np.empty((4, 3, 2))
    mc[:, 0] = [0.5, 0.5]
    mc[:, 1] = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    mc[:, 2] = [0.9, 0.1]
    np.testing.assert_allclose(scoring.mutual_information(mc), [0.0, math.log(2), 0.0], atol=1e-12)
    assert geometry.top_k(scoring.mutual_information(mc), 1, np.arange(3)).tolist() == [1]
    # Entropy of the mean cannot tell text 0 from text 1.
    mean_entropy = scoring.entropy(mc.mean(axis=0))
    assert mean_entropy[0] == pytest.approx(mean_entropy[1])


def test_node_terms_weighting():
    # Text 0 is uncertain at node "hot", text 1 at node "cold".
    probs = {
        "hot": np.array([[0.5, 0.5], [1.0, 0.0]]),
        "cold": np.array([[1.0, 0.0], [0.5, 0.5]]),
    }
    terms = scoring.node_uncertainty_terms(probs, {"hot": 1.0, "cold": 0.0})
    total = terms["hot"] + terms["cold"]
    np.testing.assert_allclose(total, [1.0, 0.0])
    assert geometry.top_k(total, 1, np.arange(2)).tolist() == [0]


def test_node_terms_normalise_by_values():
    probs = {"three": np.full((1, 3), 1 / 3), "two": np.full((1, 2), 0.5)}
    terms = scoring.node_uncertainty_terms(probs, {"three": 0.5, "two": 0.5})
    np.testing.assert_allclose([terms["three"][0], terms["two"][0]], [0.5, 0.5])


# ---------------------------------------------------------------- embedding-space math


def line_points(values):
    return np.array([[v, 0.0] for v in values], dtype=np.float32)


def test_coreset_points_on_line():
    pool = line_points(range(1, 11))
    order, distances = geometry.k_center_greedy(
        pool, line_points([0]), 2, chunk_size=3, tiebreak=np.arange(10)
    )
    assert order.tolist() == [9, 4]  # the points at 10, then at 5
    np.testing.assert_allclose(distances, [10.0, 5.0], rtol=1e-6)


def test_coreset_select_batch_on_line():
    batch = select_batch(
        "coreset",
        pool_ids=[f"p{v}" for v in range(1, 11)],
        pool_embeddings=line_points(range(1, 11)),
        labelled_embeddings=line_points([0]),
        batch_size=2,
    )
    assert [c.text_id for c in batch] == ["p10", "p5"]
    assert batch[0].breakdown == {"distance": pytest.approx(10.0)}


def test_coreset_without_labelled_starts_at_mean():
    order, distances = geometry.k_center_greedy(
        line_points(range(1, 10)), None, 1, chunk_size=4, tiebreak=np.arange(9)
    )
    assert order.tolist() == [4]  # the point at 5 is the pool mean
    np.testing.assert_allclose(distances, [0.0], atol=1e-6)


def test_badge_first_pick_and_zero_gradient():
    # Text 0 is certain (zero gradient), texts 1 and 2 are identical uncertain texts.
    probs = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]])
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    order, scores = geometry.badge_kmeans_pp(
        probs, features, 3, rng=np.random.default_rng(0), tiebreak=np.arange(3)
    )
    assert order.tolist() == [1, 0, 2]
    np.testing.assert_allclose(scores, [0.5, 0.5, 0.0], atol=1e-7)


def test_badge_distances_match_explicit_gradients():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=30)
    features = rng.normal(size=(30, 5)).astype(np.float32)
    order, scores = geometry.badge_kmeans_pp(
        probs, features, 6, rng=np.random.default_rng(2), tiebreak=np.arange(30)
    )
    a = probs.copy()
    a[np.arange(30), probs.argmax(axis=1)] -= 1.0
    gradients = np.einsum("nk,nh->nkh", a, features.astype(np.float64)).reshape(30, -1)  # (n, k*h)
    assert scores[0] == pytest.approx(np.sum(gradients[order[0]] ** 2))
    for step in range(1, 6):
        earlier = gradients[order[:step]]
        expected = np.min(np.sum((earlier - gradients[order[step]]) ** 2, axis=1))
        assert scores[step] == pytest.approx(expected, rel=1e-5)


def test_density_outlier_lowest():
    rng = np.random.default_rng(0)
    cluster = np.ones((8, 6)) + 0.01 * rng.normal(size=(8, 6))
    outlier = np.array([[1.0, -1.0, 1.0, -1.0, 1.0, -1.0]])
    X = np.vstack([cluster, outlier]).astype(np.float32)
    values = geometry.density(
        X, n_neighbors=3, sample_size=100, chunk_size=4, rng=np.random.default_rng(0)
    )
    assert values.argmin() == 8
    assert values[:8].min() > 0.99
    assert values[8] == pytest.approx(0.0, abs=0.01)  # its cosine to the cluster is about 0


def test_density_chunk_invariant():
    X = np.random.default_rng(3).normal(size=(50, 8)).astype(np.float32)
    options = dict(n_neighbors=4, sample_size=20)
    small = geometry.density(X, chunk_size=7, rng=np.random.default_rng(5), **options)
    large = geometry.density(X, chunk_size=500, rng=np.random.default_rng(5), **options)
    np.testing.assert_allclose(small, large, rtol=1e-6)


def test_greedy_diverse_skips_near_duplicate():
    X = np.array([[1.0, 0.0], [1.0, 0.001], [0.0, 1.0]], dtype=np.float32)
    scores = np.array([1.0, 0.99, 0.5])
    order, factors = geometry.greedy_diverse_selection(
        scores, X, None, 2, gamma=1.0, chunk_size=2, tiebreak=np.arange(3)
    )
    assert order.tolist() == [0, 2]
    np.testing.assert_allclose(factors, [1.0, 1.0], atol=1e-6)
    assert geometry.top_k(scores, 2, np.arange(3)).tolist() == [0, 1]


def test_greedy_diverse_avoids_labelled():
    X = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    order, factors = geometry.greedy_diverse_selection(
        np.array([1.0, 0.6]), X, np.array([[2.0, 0.0]], dtype=np.float32), 1,
        gamma=1.0, chunk_size=8, tiebreak=np.arange(2),
    )
    assert order.tolist() == [1]
    assert factors[0] == pytest.approx(1.0)


def test_max_cosine_similarity_blocks():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(23, 5)).astype(np.float32)
    Y = rng.normal(size=(11, 5)).astype(np.float32)
    unit_x = X / np.linalg.norm(X, axis=1, keepdims=True)
    unit_y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    expected = (unit_x @ unit_y.T).max(axis=1)
    actual = geometry.max_cosine_similarity(X, Y, chunk_size=4)
    np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_tiebreak_decides_equal_scores():
    scores = np.zeros(5)
    assert geometry.top_k(scores, 3, np.array([4, 2, 0, 1, 3])).tolist() == [2, 3, 1]
    assert geometry.argmax_tiebreak(scores, np.array([4, 2, 0, 1, 3])) == 2


# ---------------------------------------------------------------- node weights


def test_default_node_weights_chain():
    chain = ConceptGraph(
        task="toy", output="out", nodes=[node("a"), node("b"), node("out")],
        edges=[("a", "b"), ("b", "out")],
    )
    weights = default_node_weights(chain)
    assert weights == pytest.approx({"a": 2 / 11, "b": 3 / 11, "out": 6 / 11})


def test_default_node_weights_demo_graph():
    demo = ConceptGraph.load("assets/demo/graph.json")
    weights = default_node_weights(demo)
    assert list(weights) == demo.names
    assert sum(weights.values()) == pytest.approx(1.0)
    assert max(weights, key=weights.get) == "verdict"
    assert weights["tone"] == pytest.approx(weights["ironic"])  # both are parents of verdict


def test_criticality_weights_clip_and_normalise(graph):
    weights = criticality_weights({"a": -1.0, "b": 3.0, "mid": 1.0, "out": 0.0}, graph=graph)
    assert weights == pytest.approx({"a": 0.0, "b": 0.75, "mid": 0.25, "out": 0.0})


def test_criticality_weights_output_keeps_default(graph):
    # Reach weights of the tiny graph: a 1/3, b 1/2, mid 1/2, out 1, so out's share is 3/7.
    weights = criticality_weights({"a": -1.0, "b": 3.0, "mid": 1.0}, graph=graph)
    assert weights == pytest.approx({"a": 0.0, "b": 3 / 7, "mid": 1 / 7, "out": 3 / 7})
    assert default_node_weights(graph)["out"] == pytest.approx(3 / 7)


def test_criticality_weights_all_zero_fallback(graph):
    assert criticality_weights({"a": 0.0, "b": -2.0}, graph=graph) == default_node_weights(graph)
    assert criticality_weights({"x": 0.0, "y": 0.0}) == {"x": 0.5, "y": 0.5}


def test_criticality_weights_rejects_nan():
    with pytest.raises(AcquisitionError, match="invalid impact nan for node 'a'"):
        criticality_weights({"a": float("nan")})


def test_config_rejects_negative_coefficient():
    with pytest.raises(AcquisitionError, match=r"AcquisitionConfig.beta=-0.1"):
        AcquisitionConfig(beta=-0.1)
    with pytest.raises(AcquisitionError, match=r"AcquisitionConfig.mc_samples=1"):
        AcquisitionConfig(mc_samples=1)


# ---------------------------------------------------------------- gcp with a real student


def hand_set_student():
    """A student whose node `a` is uncertain exactly when x[0] == 0, node `b` when x[1] == 0."""
    two = ConceptGraph(
        task="toy", output="out", nodes=[node("a"), node("b"), node("out")],
        edges=[("a", "out"), ("b", "out")],
    )
    model = GCPStudent(two, input_dim=4, config=StudentConfig(hidden_dim=4, dropout=0.0), seed=0)
    with torch.no_grad():
        for name, column in (("a", 0), ("b", 1)):
            module = model.module(name)
            module.transition[0].weight.copy_(torch.eye(4))
            module.transition[0].bias.zero_()
            module.head.weight.zero_()
            module.head.weight[1, column] = 5.0
            module.head.bias.zero_()
    return model


def test_gcp_high_weight_node_wins():
    model = hand_set_student()
    # text "ua" is uncertain at a and certain at b; text "ub" the reverse.
    pool = np.array([[0.0, 10.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    options = dict(pool_ids=["ua", "ub"], pool_embeddings=pool, labelled_embeddings=None,
                   batch_size=1, student=model)
    by_a = select_batch("gcp", node_weights={"a": 1.0, "b": 0.0, "out": 0.0}, **options)
    by_b = select_batch("gcp", node_weights={"a": 0.0, "b": 1.0, "out": 0.0}, **options)
    assert by_a[0].text_id == "ua"
    assert by_b[0].text_id == "ub"
    assert by_a[0].breakdown["nodes"]["a"] == pytest.approx(1.0, abs=1e-6)
    assert by_a[0].breakdown["nodes"]["b"] == 0.0


@pytest.mark.parametrize(
    ("switch", "key", "neutral"),
    [
        ("use_disagreement", "disagreement", 0.0),
        ("use_representativeness", "representativeness", 0.0),
        ("use_diversity", "diversity_factor", 1.0),
    ],
)
def test_gcp_ablation_switches(switch, key, neutral, corpus, student):
    on = run("gcp", corpus, student, config=AcquisitionConfig(**{switch: True}))
    off = run("gcp", corpus, student, config=AcquisitionConfig(**{switch: False}))
    values_on = [c.breakdown[key] for c in on]
    values_off = [c.breakdown[key] for c in off]
    if key == "disagreement":
        values_on = [sum(v.values()) for v in values_on]
        values_off = [sum(v.values()) for v in values_off]
    assert all(v != neutral for v in values_on)
    assert all(v == neutral for v in values_off)


def test_gcp_uniform_weights_ignore_node_weights(corpus, student):
    config = AcquisitionConfig(use_node_weights=False)
    plain = run("gcp", corpus, student, config=config)
    weighted = run("gcp", corpus, student, config=config, node_weights={"a": 1.0})
    assert plain == weighted
    assert run("gcp", corpus, student, node_weights={"a": 1.0}) != plain


def test_gcp_diversity_is_off_by_default(corpus, student):
    assert run("gcp", corpus, student) == run("gcp", corpus, student, config=AcquisitionConfig(use_diversity=False))
    assert all(c.breakdown["diversity_factor"] == 1.0 for c in run("gcp", corpus, student))


def test_gcp_breakdown_sums_to_score(corpus, student):
    for candidate in run("gcp", corpus, student, config=AcquisitionConfig(use_diversity=True)):
        parts = candidate.breakdown
        base = sum(parts["nodes"].values()) + sum(parts["disagreement"].values())
        base += parts["representativeness"]
        assert candidate.score == pytest.approx(parts["diversity_factor"] * base)
        assert set(parts["nodes"]) == {"a", "b", "mid", "out"}


def test_gcp_label_only_student(corpus, graph):
    baseline = LabelOnlyStudent(graph, input_dim=DIM, seed=0)
    batch = run("gcp", corpus, baseline, node_weights={"a": 1.0})
    assert len(batch) == 10
    assert set(batch[0].breakdown["nodes"]) == {"out"}


def test_gcp_mc_draws_ignore_chunk_size(corpus, student):
    common = dict(use_representativeness=False, use_diversity=False, mc_chunk_size=16, mc_samples=4)
    small = run("gcp", corpus, student, config=AcquisitionConfig(chunk_size=5, **common))
    large = run("gcp", corpus, student, config=AcquisitionConfig(chunk_size=1000, **common))
    assert [c.text_id for c in small] == [c.text_id for c in large]
    for a, b in zip(small, large):
        assert a.breakdown["disagreement"] == pytest.approx(b.breakdown["disagreement"], rel=1e-5)


def test_gcp_mc_block_size_changes_draws(corpus, student):
    first = run("gcp", corpus, student, config=AcquisitionConfig(mc_chunk_size=16, mc_samples=4))
    second = run("gcp", corpus, student, config=AcquisitionConfig(mc_chunk_size=17, mc_samples=4))
    assert [c.breakdown["disagreement"] for c in first] != [
        c.breakdown["disagreement"] for c in second
    ]


def test_gcp_demo_graph_default_weights():
    demo = ConceptGraph.load("assets/demo/graph.json")
    model = GCPStudent(demo, input_dim=384, seed=0)
    pool = np.random.default_rng(0).normal(size=(40, 384)).astype(np.float32)
    batch = select_batch(
        "gcp", pool_ids=[f"r{i}" for i in range(40)], pool_embeddings=pool, batch_size=5,
        student=model, config=AcquisitionConfig(mc_samples=4),
    )
    weights = default_node_weights(demo)
    assert list(batch[0].breakdown["nodes"]) == demo.names
    for name, term in batch[0].breakdown["nodes"].items():
        assert 0.0 <= term <= weights[name] + 1e-9  # w_i * H_i with H_i normalised to [0, 1]


def test_gcp_after_training_uses_impacts(graph):
    from gcp.training import TrainConfig, counterfactual_impact, fit_student

    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, DIM)).astype(np.float32)
    a, b = (X[:, 0] > 0).astype(int), (X[:, 1] > 0).astype(int)
    mid = np.digitize(X[:, 2], [-0.5, 0.5])
    Y = np.stack([a, b, mid, a | b], axis=1).astype(np.int64)  # columns follow graph.names
    model = GCPStudent(graph, input_dim=DIM, seed=0)
    fit_student(model, X[:120], Y[:120], config=TrainConfig(epochs=5, num_threads=2))

    impacts = counterfactual_impact(model, X[:120], Y[:120])
    weights = criticality_weights(impacts, graph=graph)
    batch = select_batch(
        "gcp", pool_ids=[f"u{i}" for i in range(40)], pool_embeddings=X[120:],
        labelled_embeddings=X[:120], batch_size=4, student=model, node_weights=impacts,
        config=AcquisitionConfig(mc_samples=4),
    )
    assert "out" not in impacts
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["out"] == pytest.approx(default_node_weights(graph)["out"])
    assert len({c.text_id for c in batch}) == 4
    for name, term in batch[0].breakdown["nodes"].items():
        assert term <= weights[name] + 1e-9
