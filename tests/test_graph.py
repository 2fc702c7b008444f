import json

import numpy as np
import pytest

from gcp.exceptions import GraphValidationError
from gcp.graph import MISSING, ConceptGraph, ConceptNode, annotations_to_matrix, diff

DEMO_GRAPH = "assets/demo/graph.json"


def node(name, values=("no", "yes"), question=None):
    return ConceptNode(name=name, question=question or f"Is it {name}?", values=values)


def small_graph():
    # a -> c, b -> c, c -> out, a -> out; file order puts c before a and b.
    return ConceptGraph(
        task="toy",
        output="out",
        nodes=[node("c"), node("a"), node("b"), node("out", ("neg", "pos"))],
        edges=[("a", "c"), ("b", "c"), ("c", "out"), ("a", "out")],
    )


def test_demo_graph_loads_unchanged():
    graph = ConceptGraph.load(DEMO_GRAPH)
    assert len(graph) == 14
    assert graph.output == "verdict"
    assert graph.labels == ("fresh", "rotten")
    assert graph.node("tone").values == ("positive", "negative", "mixed")
    assert len(graph.roots) == 10


def test_round_trip_preserves_content(tmp_path):
    graph = ConceptGraph.load(DEMO_GRAPH)
    path = tmp_path / "g.json"
    graph.save(path)
    again = ConceptGraph.load(path)
    assert again == graph
    assert again.content_hash == graph.content_hash
    assert json.loads(path.read_text())["format_version"] == 1


def test_topological_order_differs_from_file_order():
    graph = small_graph()
    assert graph.names == ["c", "a", "b", "out"]
    assert graph.topological_order == ["a", "b", "c", "out"]
    assert graph.parents("c") == ["a", "b"]
    assert graph.descendants("a") == ["c", "out"]
    assert graph.depth("out") == 2


@pytest.mark.parametrize(
    ("nodes", "edges", "output", "message"),
    [
        ([node("a"), node("b"), node("o")], [("a", "b"), ("b", "a"), ("b", "o")], "o",
         r"cycle: (a -> b -> a|b -> a -> b)"),
        ([node("a"), node("o")], [("a", "zzz"), ("a", "o")], "o", r"unknown node 'zzz'"),
        ([node("a"), node("a"), node("o")], [("a", "o")], "o", r"duplicate node name 'a'"),
        ([node("bad name"), node("o")], [("bad name", "o")], "o", r"invalid node name 'bad name'"),
        ([node("a", ("yes",)), node("o")], [("a", "o")], "o", r"'a' has 1 value"),
        ([node("a", ("no", "no")), node("o")], [("a", "o")], "o", r"duplicate values \['no'\]"),
        ([node("a"), node("o")], [("a", "o")], "", r"no output node"),
        ([node("a"), node("o")], [("a", "o")], "x", r"unknown output node 'x'"),
        ([node("a"), node("b"), node("o")], [("a", "o")], "o", r"\['b'\] have no path to the output"),
        ([node("a"), node("o")], [("a", "o"), ("o", "a")], "o", r"cycle"),
        ([node("a"), node("b"), node("o")], [("a", "o"), ("o", "b")], "o",
         r"output node 'o' has children \['b'\]"),
    ],
)
def test_validation_names_the_problem(nodes, edges, output, message):
    with pytest.raises(GraphValidationError, match=message):
        ConceptGraph(task="t", output=output, nodes=nodes, edges=edges)


def test_from_dict_missing_field():
    with pytest.raises(GraphValidationError, match="missing the 'nodes' field"):
        ConceptGraph.from_dict({"output": "o"})


def test_load_reports_bad_json(tmp_path):
    path = tmp_path / "g.json"
    path.write_text("{not json")
    with pytest.raises(GraphValidationError, match="not valid JSON"):
        ConceptGraph.load(path)


def test_invalid_edit_leaves_original_untouched():
    graph = small_graph()
    before = graph.to_dict()
    with pytest.raises(GraphValidationError, match="cycle"):
        graph.add_edge("out", "a")
    with pytest.raises(GraphValidationError, match="cannot remove the output node"):
        graph.remove_node("out")
    with pytest.raises(GraphValidationError, match="no path to the output"):
        graph.add_node(node("lonely"))
    assert graph.to_dict() == before


def test_edits_return_new_graphs():
    graph = small_graph()
    edited = (
        graph.add_node(node("d"), parents=["b"], children=["out"])
        .rename_node("a", "alpha")
        .set_question("b", "Is it bee?")
        .set_values("c", ["low", "mid", "high"])
        .remove_edge("alpha", "out")
    )
    assert "d" not in graph
    assert edited.parents("c") == ["alpha", "b"]
    assert edited.node("c").values == ("low", "mid", "high")
    assert edited.content_hash != graph.content_hash
    assert edited.remove_node("d").parents("out") == ["c"]


def test_diff_lists_every_kind_of_change():
    old = small_graph()
    new = (
        old.add_node(node("d"), parents=["b"], children=["out"])
        .rename_node("a", "alpha")
        .set_question("b", "Is it bee?")
        .remove_edge("alpha", "out")
    )
    change = diff(old, new)
    assert change.added_nodes == ("d",)
    assert change.renamed_nodes == (("a", "alpha"),)
    assert change.removed_nodes == ()
    assert change.changed_nodes["b"] == ("question",)
    assert "parents" in change.changed_nodes["out"]
    assert ("b", "d") in change.added_edges
    assert change.removed_edges == (("alpha", "out"),)
    assert change.reannotate_nodes == ("d", "b")
    assert change.retrain_nodes(new) == ["b", "c", "d", "out"]
    assert diff(old, old).is_empty


def test_annotations_to_matrix_marks_missing():
    graph = small_graph()
    matrix = annotations_to_matrix(graph, [{"a": "yes", "out": "pos"}, {"c": "no", "b": None}])
    expected = np.array([[MISSING, 1, MISSING, 1], [0, MISSING, MISSING, MISSING]])
    np.testing.assert_array_equal(matrix, expected)
    with pytest.raises(GraphValidationError, match="invalid value 'maybe' for node 'a'"):
        annotations_to_matrix(graph, [{"a": "maybe"}])
