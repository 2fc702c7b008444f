"""Tests of the offline teachers: recorded answers (the demo file) and rules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gcp.exceptions import GraphValidationError, TeacherError
from gcp.graph import ConceptGraph, ConceptNode
from gcp.teachers import RecordedTeacher, RuleTeacher, TextItem, teacher_from_config, validate_rule

REPO = Path(__file__).resolve().parents[1]
DEMO_GRAPH = REPO / "assets" / "demo" / "graph.json"
DEMO_ANNOTATIONS = REPO / "assets" / "demo" / "annotations.csv"

SPAM_GRAPH = {
    "task": "Decide whether a message is spam.",
    "output": "label",
    "nodes": [
        {"name": "offer", "question": "Does it make an offer?", "values": ["no", "yes"],
         "rule": {"yes": {"regex": [r"\bfree\b", r"\d+% off"], "keywords": ["winner", "act now"]},
                  "default": "no"}},
        {"name": "urgency", "question": "How urgent does it sound?", "values": ["low", "high"],
         "rule": {"high": {"keywords": ["NOW"]}, "case_sensitive": True}},
        {"name": "label", "question": "Is it spam?", "values": ["ham", "spam"]},
    ],
    "edges": [["offer", "label"], ["urgency", "label"]],
}


@pytest.fixture(scope="module")
def demo_graph() -> ConceptGraph:
    return ConceptGraph.load(DEMO_GRAPH)


@pytest.fixture(scope="module")
def demo_rows() -> list[dict[str, str]]:
    with DEMO_ANNOTATIONS.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))[:50]


@pytest.fixture
def spam_graph() -> ConceptGraph:
    return ConceptGraph.from_dict(SPAM_GRAPH)


def test_recorded_demo_file_answers_all_nodes(demo_graph, demo_rows):
    teacher = RecordedTeacher(DEMO_ANNOTATIONS, graph=demo_graph)
    items = [TextItem(row["id"], row["text"]) for row in demo_rows]

    batch = teacher.annotate(demo_graph, items)

    assert len(batch.ok) == len(demo_rows)
    assert batch.cost == 0
    assert batch.n_calls == 0
    for annotation, row in zip(batch.annotations, demo_rows):
        assert len(annotation.values) == 14
        assert annotation.values == {name: row[name] for name in demo_graph.names}
        assert annotation.source == "recorded"
        assert annotation.cost == 0
        assert annotation.model == "annotations.csv"
        assert json.loads(annotation.raw)["id"] == row["id"]


def test_recorded_lookup_by_text_when_id_unknown(demo_graph, demo_rows):
    teacher = RecordedTeacher(DEMO_ANNOTATIONS)
    row = demo_rows[3]

    batch = teacher.annotate(demo_graph, [TextItem("my-own-id", row["text"])], nodes=["tone"])

    assert batch.annotations[0].status == "ok"
    assert batch.annotations[0].values == {"tone": row["tone"]}


def test_recorded_missing_text_fails_by_name(demo_graph, demo_rows):
    teacher = RecordedTeacher(DEMO_ANNOTATIONS)
    items = [TextItem(demo_rows[0]["id"], demo_rows[0]["text"]), TextItem("x-1", "Not a review.")]

    batch = teacher.annotate(demo_graph, items)

    assert [a.status for a in batch.annotations] == ["ok", "failed"]
    assert batch.annotations[1].error == (
        "text id 'x-1' is not in the recorded file 'annotations.csv' "
        "(looked up by id, then by exact text)"
    )
    assert batch.annotations[1].values == {}
    assert batch.error is None


def test_recorded_no_text_found_sets_batch_error(demo_graph):
    teacher = RecordedTeacher(DEMO_ANNOTATIONS)

    batch = teacher.annotate(demo_graph, [TextItem("a", "unknown"), TextItem("b", "also unknown")])

    assert [a.status for a in batch.annotations] == ["failed", "failed"]
    assert batch.error == (
        "none of the 2 texts is in the recorded file 'annotations.csv': check that the file "
        "belongs to this dataset (ids or exact texts must match)"
    )


def test_recorded_missing_node_columns(demo_graph):
    extended = demo_graph.add_node(
        ConceptNode("sarcastic", "Is it sarcastic?", ("no", "yes")), children=["tone"]
    )

    with pytest.raises(TeacherError, match=r"has no column for node\(s\) \['sarcastic'\]"):
        RecordedTeacher(DEMO_ANNOTATIONS, graph=extended)
    teacher = RecordedTeacher(DEMO_ANNOTATIONS)
    with pytest.raises(TeacherError, match=r"has no column for node\(s\) \['sarcastic'\]"):
        teacher.annotate(extended, [TextItem("rt-11970", "I hated every minute of it.")])


def test_recorded_invalid_value_is_not_coerced(tmp_path, spam_graph):
    path = tmp_path / "answers.csv"
    path.write_text("id,text,offer,urgency,label\n1,Hi,Yes,low,ham\n2,Free!,,high,spam\n")
    teacher = RecordedTeacher(path, graph=spam_graph)

    batch = teacher.annotate(spam_graph, [TextItem("1", "Hi"), TextItem("2", "Free!")])

    first, second = batch.annotations
    assert first.status == "failed"
    assert first.error == "recorded value 'Yes' for node 'offer' is not one of ['no', 'yes']"
    assert first.values == {"urgency": "low", "label": "ham"}
    assert second.error == "no recorded value for node 'offer'"


def test_recorded_jsonl_by_text(tmp_path, spam_graph):
    path = tmp_path / "answers.jsonl"
    lines = [
        {"text": "You are a winner", "offer": "yes", "urgency": "low", "label": "spam"},
        {"text": "Lunch?", "offer": "no", "urgency": "low", "label": "ham"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    teacher = RecordedTeacher(path, graph=spam_graph)

    batch = teacher.annotate(spam_graph, [TextItem("9", "Lunch?")])

    assert batch.annotations[0].values == {"offer": "no", "urgency": "low", "label": "ham"}


def test_recorded_file_errors(tmp_path):
    with pytest.raises(TeacherError, match="recorded file not found"):
        RecordedTeacher(tmp_path / "nope.csv")
    no_key = tmp_path / "no_key.csv"
    no_key.write_text("offer,label\nyes,spam\n")
    with pytest.raises(TeacherError, match="needs an 'id' or a 'text' column"):
        RecordedTeacher(no_key)
    duplicate = tmp_path / "duplicate.csv"
    duplicate.write_text("id,text\n1,a\n1,b\n")
    with pytest.raises(TeacherError, match="repeats id '1' \\(row 3\\)"):
        RecordedTeacher(duplicate)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1}\n{oops\n')
    with pytest.raises(TeacherError, match="line 2: invalid JSON"):
        RecordedTeacher(broken)


def test_recorded_cannot_propose_graph():
    teacher = RecordedTeacher(DEMO_ANNOTATIONS)

    with pytest.raises(TeacherError, match="cannot propose a concept graph"):
        teacher.propose_graph("task", ["a", "b"], ["text"])


def test_recorded_config_round_trip(demo_graph):
    teacher = RecordedTeacher(DEMO_ANNOTATIONS)

    rebuilt = teacher_from_config(teacher.describe())

    assert isinstance(rebuilt, RecordedTeacher)
    assert rebuilt.describe() == teacher.describe()
    assert teacher.estimate_cost(demo_graph, [TextItem("a", "b")]).cost == 0


def test_rules_regex_keywords_default(spam_graph):
    teacher = RuleTeacher()
    items = [
        TextItem("a", "Get it FREE today"),
        TextItem("b", "Everything 50% off"),
        TextItem("c", "And the WINNER is you"),
        TextItem("d", "Freedom is great"),
    ]

    batch = teacher.annotate(spam_graph, items, nodes=["offer"])

    assert [a.values["offer"] for a in batch.annotations] == ["yes", "yes", "yes", "no"]
    assert json.loads(batch.annotations[2].raw) == {"offer": "yes (keyword 'winner')"}
    assert json.loads(batch.annotations[3].raw) == {"offer": "no (default)"}
    assert all(a.source == "rule" and a.cost == 0 for a in batch.annotations)


def test_rules_case_sensitive_without_default(spam_graph):
    teacher = RuleTeacher()

    batch = teacher.annotate(
        spam_graph, [TextItem("a", "Buy NOW"), TextItem("b", "buy now")], nodes=["urgency"]
    )

    assert batch.annotations[0].values == {"urgency": "high"}
    assert batch.annotations[1].status == "failed"
    assert batch.annotations[1].error == (
        "node 'urgency': no condition matched and the rule has no 'default'"
    )


def test_rules_label_column_answers_output(spam_graph):
    teacher = RuleTeacher(labels={"a": "spam", "b": "eggs"})
    items = [TextItem("a", "free NOW"), TextItem("b", "hi NOW"), TextItem("c", "x NOW")]

    batch = teacher.annotate(spam_graph, items)

    first, second, third = batch.annotations
    assert first.status == "ok"
    assert first.values == {"offer": "yes", "urgency": "high", "label": "spam"}
    assert second.error == "label 'eggs' of text 'b' is not one of the labels ['ham', 'spam']"
    assert second.values == {"offer": "no", "urgency": "high"}
    assert third.error == "text id 'c' has no label in the label column"


def test_rules_node_without_rule(spam_graph):
    with pytest.raises(TeacherError, match=r"node\(s\) \['label'\] have no rule.*label column"):
        RuleTeacher().annotate(spam_graph, [TextItem("a", "x")])


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("yes", "rule of node 'n' must be a JSON object, got str"),
        ({"maybe": {"keywords": ["x"]}}, "key 'maybe' is not one of the node's values"),
        ({"yes": {"regex": ["(unclosed"]}}, "invalid regex '\\(unclosed'"),
        ({"yes": {"keywords": "free"}}, "'keywords' must be a list of non-empty strings"),
        ({"yes": {"words": ["x"]}}, "unknown key\\(s\\) \\['words'\\]"),
        ({"yes": {}}, "has neither 'regex' nor 'keywords' entries"),
        ({"yes": {"keywords": ["x"]}, "default": "perhaps"}, "default 'perhaps' is not one of"),
        ({"default": "no"}, "has no conditions"),
        (
            {"yes": {"keywords": ["x"]}, "case_sensitive": "yes"},
            "'case_sensitive' must be true or false",
        ),
    ],
)
def test_rules_invalid_rule_message(rule, message):
    node = ConceptNode("n", "Question?", ("no", "yes"), rule=rule)

    with pytest.raises(GraphValidationError, match=message):
        validate_rule(node)


def test_rules_invalid_rule_rejected_by_annotate(spam_graph):
    broken = spam_graph.set_rule("offer", {"yes": {"regex": ["["]}})

    message = "rule of node 'offer', value 'yes': invalid regex"
    with pytest.raises(GraphValidationError, match=message):
        RuleTeacher().annotate(broken, [TextItem("a", "x")], nodes=["offer"])


def test_rules_keyword_with_punctuation():
    rule = {"yes": {"keywords": ["5/5", "a+"]}, "default": "no"}
    node = ConceptNode("n", "Q?", ("no", "yes"), rule=rule)
    rule = validate_rule(node)

    assert rule.apply("I give it 5/5.")[0] == "yes"
    assert rule.apply("grade: a+")[0] == "yes"
    assert rule.apply("15/50")[0] == "no"


def test_rules_config_round_trip(spam_graph):
    teacher = teacher_from_config({"kind": "rules"}, labels={"a": "ham"})

    batch = teacher.annotate(spam_graph, [TextItem("a", "hello")])

    assert teacher.describe() == {"kind": "rules", "name": "rules"}
    assert batch.annotations[0].values["label"] == "ham"
