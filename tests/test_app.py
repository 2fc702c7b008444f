"""AppTest tests of the Streamlit app: every page on an empty project and on the demo project.

Each test works on its own copy of a demo project, opened through the ``project`` query
parameter. Jobs (proposing a round, asking the teacher, training) run in background
threads, so a test starts one with a click, waits for the thread, and reruns the app.
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the app imports its helpers from `pages.shared`

from fake_openai import FakeOpenAI, json_reply  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from gcp.loop import Studio, demo_project  # noqa: E402
from pages.shared import common, engine  # noqa: E402

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

APP = str(REPO / "app.py")
PAGES = ["project", "concept_graph", "acquisition", "annotations", "training", "diagnostics",
         "export"]
XSS = "<img src=x onerror=alert(1)>"


# ---------------------------------------------------------------------- fixtures

FAST_EPOCHS = 15  # enough for the demo student to learn the graph's main paths


def shared_demo(tmp_path_factory) -> Path:
    """Build the demo project with every embedding cached, once per test session."""
    folder = tmp_path_factory.getbasetemp() / "gcp-demo-embedded"
    marker = folder / ".embedded"
    if not marker.exists():
        demo_project(folder)
        with Studio.open(folder) as studio:
            studio.embeddings()
        marker.touch()
    return folder


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory) -> Path:
    return shared_demo(tmp_path_factory)


@pytest.fixture(scope="module")
def trained_source(tmp_path_factory, demo_source) -> Path:
    """A copy of the demo project after one annotated, trained and closed round."""
    folder = tmp_path_factory.mktemp("trained") / "project"
    shutil.copytree(demo_source, folder)
    with Studio.open(folder) as studio:
        number = studio.propose_round("random", 120, seed=0)
        studio.decide(number, None, approved=True)
        studio.annotate(number)
        engine.train_and_close(studio, targeted=False, top_k=2, epochs=FAST_EPOCHS)
    return folder


@pytest.fixture
def demo_copy(tmp_path, demo_source) -> Path:
    shutil.copytree(demo_source, tmp_path / "project")
    return tmp_path / "project"


@pytest.fixture
def trained_copy(tmp_path, trained_source) -> Path:
    shutil.copytree(trained_source, tmp_path / "project")
    return tmp_path / "project"


@pytest.fixture
def empty_project(tmp_path) -> Path:
    folder = tmp_path / "empty"
    Studio.create(folder, graph=REPO / "assets" / "demo" / "graph.json").close()
    return folder


def open_app(project: Path, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["project"] = str(project)
    at.run()
    if page is not None:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def finish_job(at: AppTest, project: Path) -> None:
    """Wait for the project's background job, check it succeeded, and rerun the app."""
    job = common.wait_for_job(project, timeout=240)
    assert job is not None
    assert job.finished
    assert job.error is None, job.error
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def texts_of(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# ---------------------------------------------------------------------- structure


def test_app_sources_import_no_torch_or_openai():
    files = [REPO / "app.py", *sorted((REPO / "pages").rglob("*.py"))]
    assert len(files) >= 8
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert "torch" not in imported, path.name
        assert "openai" not in imported, path.name
        assert "transformers" not in imported, path.name


def test_app_declares_pages_in_workflow_order():
    source = (REPO / "app.py").read_text(encoding="utf-8")
    positions = [source.index(f'"pages/{name}.py"') for name in PAGES]
    assert positions == sorted(positions)
    assert "st.navigation(" in source


# ---------------------------------------------------------------------- project choice


def test_app_opens_demo_from_env(monkeypatch, tmp_path, demo_source):
    target = tmp_path / "from-env"
    shutil.copytree(demo_source, target)
    monkeypatch.setenv("GCP_PROJECT_DIR", str(target))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.text_input(key="app_project_dir").value == str(target)
    labels = [m.label for m in at.metric]
    assert "Labels used" in labels
    assert "Money spent" in labels


def test_project_page_open_rejects_missing_folder(demo_copy, tmp_path):
    at = open_app(demo_copy)
    at.text_input(key="project_open_dir").input(str(tmp_path / "nowhere")).run()
    at.button(key="project_open_button").click().run()
    assert "project folder not found" in texts_of(at.error)
    assert at.query_params["project"] == str(demo_copy)


def _write_texts(path: Path) -> Path:
    rows = ["id,text,gold_label"] + [
        f"t{i},{'A delight from start to finish' if i % 2 else 'A tedious mess'} number {i},"
        f"{'fresh' if i % 2 else 'rotten'}"
        for i in range(40)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_project_page_imports_into_empty_project(empty_project, tmp_path):
    data = _write_texts(tmp_path / "texts.csv")
    at = open_app(empty_project)
    at.text_input(key="project_import_path").input(str(data)).run()
    at.button(key="project_import_button").click().run()
    assert "Imported 40 texts from texts.csv" in texts_of(at.success)
    assert at.metric[0].label == "Labels used"
    assert "40 texts: 32 in the pool, 8 held out for testing" in texts_of(at.caption)


def test_project_page_import_reports_bad_file(empty_project, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,body\nt1,hello\n", encoding="utf-8")
    at = open_app(empty_project)
    at.text_input(key="project_import_path").input(str(bad)).run()
    at.button(key="project_import_button").click().run()
    assert "'bad.csv' has no column 'text'" in texts_of(at.error)
    with Studio.open(empty_project) as studio:
        assert studio.status()["texts"] == 0


def test_project_page_creates_project(tmp_path):
    data = _write_texts(tmp_path / "texts.csv")
    target = tmp_path / "created"
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["project"] = str(tmp_path / "not-a-project")
    at.run()
    assert "Cannot open the project" in texts_of(at.error)
    at.text_input(key="project_create_dir").input(str(target))
    at.text_input(key="project_create_graph_path").input(str(REPO / "assets/demo/graph.json"))
    at.text_input(key="project_create_path").input(str(data)).run()
    at.button(key="project_create_button").click().run()
    assert not at.exception
    assert at.query_params["project"] == str(target)
    with Studio.open(target) as studio:
        assert studio.status()["texts"] == 40


def test_project_page_openai_teacher_connection(demo_copy, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with FakeOpenAI() as server:
        at = open_app(demo_copy)
        at.radio(key="project_teacher_kind").set_value("openai").run()
        at.text_input(key="project_teacher_model").input("fake-model")
        at.text_input(key="project_teacher_base_url").input(server.url).run()
        at.button(key="project_teacher_save").click().run()
        assert "Teacher saved: openai." in texts_of(at.success)
        at.button(key="project_teacher_test").click().run()
        assert not at.error, texts_of(at.error)
        assert server.count == 1
        assert server.requests[0].headers["authorization"] == "Bearer test-key"
    with Studio.open(demo_copy) as studio:
        assert studio.teacher_config()["base_url"] == server.url
        assert "test-key" not in str(studio.project.settings())


EMPTY_PROJECT_HINTS = {
    "project": "import texts in the *Import data* tab",
    "concept_graph": "Nodes are grey: no trained student",
    "acquisition": "The pool is empty: import texts on the Project page first.",
    "annotations": "No annotations yet.",
    "training": "No labelled texts yet.",
    "diagnostics": "No trained student yet.",
    "export": "No trained student yet",
}


@pytest.mark.parametrize("page", PAGES)
def test_page_empty_project_says_next_step(empty_project, page):
    at = open_app(empty_project, page)
    shown = texts_of(at.info) + texts_of(at.markdown) + texts_of(at.caption)
    assert EMPTY_PROJECT_HINTS[page] in shown


# ---------------------------------------------------------------------- concept graph


def _srcdoc(at: AppTest) -> str:
    frames = at.get("iframe")
    assert frames, "no iframe on the page"
    return frames[0].proto.srcdoc


def _editor_key(at: AppTest, prefix: str) -> str:
    keys = [e.key for e in at.data_editor if e.key and e.key.startswith(prefix)]
    assert len(keys) == 1, keys
    return keys[0]


def test_concept_graph_draws_offline_graph(demo_copy):
    at = open_app(demo_copy, "concept_graph")
    html = _srcdoc(at)
    assert "vis.Network" in html
    assert "cdnjs" not in html
    assert "cdn.jsdelivr" not in html
    assert '"direction": "UD"' in html
    assert "Nodes are grey" in texts_of(at.caption)


def test_concept_graph_invalid_name_shows_error(demo_copy):
    at = open_app(demo_copy, "concept_graph")
    at.text_input(key="concept_graph_add_name").input(XSS)
    at.text_area(key="concept_graph_add_question").input("Is it sarcastic?")
    at.multiselect(key="concept_graph_add_children").select("tone")
    at.button(key="concept_graph_add").click().run()
    assert "invalid node name '<img src=x onerror=alert(1)>'" in texts_of(at.error)
    with Studio.open(demo_copy) as studio:
        assert len(studio.project.graph_versions()) == 1


def test_concept_graph_add_node_shows_plan_and_reverts(demo_copy):
    at = open_app(demo_copy, "concept_graph")
    at.text_input(key="concept_graph_add_name").input("sarcastic")
    at.text_area(key="concept_graph_add_question").input(f"Is it sarcastic? {XSS}")
    at.multiselect(key="concept_graph_add_children").select("tone")
    at.button(key="concept_graph_add").click().run()
    assert not at.exception
    assert "Saved graph version 2: added node sarcastic" in texts_of(at.success)
    assert "`sarcastic`" in texts_of(at.warning)
    plan = texts_of(at.markdown)
    assert "**Modules to retrain:** `sarcastic`, `tone`, `verdict`" in plan
    assert "sarcastic" in _srcdoc(at)
    with Studio.open(demo_copy) as studio:
        assert "sarcastic" in studio.graph.names

    at.selectbox(key="concept_graph_history_version").select(1).run()
    assert "removed node 'sarcastic'" in texts_of(at.text)
    at.button(key="concept_graph_revert").click().run()
    assert not at.exception
    assert "reverted to version 1" in texts_of(at.success)
    with Studio.open(demo_copy) as studio:
        assert "sarcastic" not in studio.graph.names


def test_concept_graph_table_rename_keeps_edges(demo_copy):
    at = open_app(demo_copy, "concept_graph")
    key = _editor_key(at, "concept_graph_nodes_")
    row = list(at.data_editor(key=key).value["name"]).index("ironic")
    at.session_state[key] = {"edited_rows": {row: {"name": "sarcasm"}},
                             "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="concept_graph_apply_tables").click().run()
    assert "renamed node 'ironic' to 'sarcasm'" in texts_of(at.markdown)
    with Studio.open(demo_copy) as studio:
        assert ("sarcasm", "verdict") in studio.graph.edges


def test_concept_graph_table_cycle_rejected(demo_copy):
    at = open_app(demo_copy, "concept_graph")
    key = _editor_key(at, "concept_graph_edges_")
    with Studio.open(demo_copy) as studio:
        before = studio.graph.content_hash
    at.session_state[key] = {"edited_rows": {}, "deleted_rows": [],
                             "added_rows": [{"parent": "verdict", "child": "tone"}]}
    at.run()
    at.button(key="concept_graph_apply_tables").click().run()
    assert "the graph has a cycle" in texts_of(at.error)
    with Studio.open(demo_copy) as studio:
        assert studio.graph.content_hash == before


def test_concept_graph_offline_teacher_cannot_propose(demo_copy):
    at = open_app(demo_copy, "concept_graph")
    at.button(key="concept_graph_propose").click().run()
    assert "cannot propose a concept graph" in texts_of(at.error)


PROPOSAL = {
    "concepts": [
        {"name": "praise", "question": "Does the critic praise the film?", "values": ["no", "yes"]},
        {"name": "verdict", "question": "Fresh or rotten?", "values": ["fresh", "rotten"]},
    ],
    "edges": [["praise", "verdict"]],
}


def _use_fake_teacher(project: Path, url: str) -> None:
    with Studio.open(project, api_key="test-key") as studio:
        studio.set_teacher({"kind": "openai", "model": "fake-model", "base_url": url})


def test_concept_graph_teacher_proposal_adopted(demo_copy, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with FakeOpenAI() as server:
        _use_fake_teacher(demo_copy, server.url)
        server.script(json_reply(PROPOSAL))
        at = open_app(demo_copy, "concept_graph")
        at.button(key="concept_graph_propose").click().run()
        assert not at.error, texts_of(at.error)
        assert "**Proposal:** 2 nodes, 1 edges." in texts_of(at.markdown)
        assert "added node 'praise'" in texts_of(at.text)
        at.button(key="concept_graph_adopt").click().run()
    assert "adopted the teacher's proposal" in texts_of(at.success)
    with Studio.open(demo_copy) as studio:
        assert studio.graph.names == ["praise", "verdict"]


def test_concept_graph_teacher_proposal_rejected(demo_copy, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    cyclic = {**PROPOSAL, "edges": [["praise", "verdict"], ["verdict", "praise"]]}
    with FakeOpenAI() as server:
        _use_fake_teacher(demo_copy, server.url)
        server.script(json_reply(cyclic), json_reply(cyclic))  # the reply and its repair
        at = open_app(demo_copy, "concept_graph")
        at.button(key="concept_graph_propose").click().run()
    message = texts_of(at.error)
    assert "The teacher's proposal was rejected or could not be made" in message
    assert "cycle" in message
    with Studio.open(demo_copy) as studio:
        assert len(studio.project.graph_versions()) == 1


# ---------------------------------------------------------------------- acquisition


def test_acquisition_approval_flow(demo_copy):
    at = open_app(demo_copy, "acquisition")
    at.selectbox(key="acquisition_strategy").select("random")
    at.number_input(key="acquisition_batch_size").set_value(6)
    at.button(key="acquisition_propose").click().run()
    finish_job(at, demo_copy)
    assert len(at.data_editor(key="acquisition_editor_1").value) == 6

    at.session_state["acquisition_editor_1"] = {
        "edited_rows": {0: {"select": True}, 2: {"select": True}},
        "added_rows": [], "deleted_rows": [],
    }
    at.run()
    at.button(key="acquisition_reject_selected").click().run()
    with Studio.open(demo_copy) as studio:
        decisions = studio.candidates(1)["decision"].tolist()
    assert decisions.count("rejected") == 2
    assert decisions.count("pending") == 4

    at.button(key="acquisition_approve_all").click().run()
    with Studio.open(demo_copy) as studio:
        assert studio.candidates(1)["decision"].tolist() == ["approved"] * 6
    assert "6 approved" in texts_of(at.caption)

    at.button(key="acquisition_annotate").click().run()
    finish_job(at, demo_copy)
    assert "6 answered, 0 failed" in texts_of(at.success)
    answers = at.dataframe[-1].value
    assert len(answers) == 6
    assert "verdict" in answers.columns
    assert "Round 1 is annotated" in texts_of(at.info)
    with Studio.open(demo_copy) as studio:
        assert studio.status()["labels"] == 6


def test_acquisition_cancel_round(demo_copy):
    at = open_app(demo_copy, "acquisition")
    at.number_input(key="acquisition_batch_size").set_value(3)
    at.button(key="acquisition_propose").click().run()
    finish_job(at, demo_copy)
    at.button(key="acquisition_cancel").click().run()
    assert at.button(key="acquisition_propose")
    with Studio.open(demo_copy) as studio:
        assert studio.project.rounds()["status"].tolist() == ["cancelled"]


def test_acquisition_trained_project_offers_new_round(trained_copy):
    at = open_app(trained_copy, "acquisition")
    assert at.button(key="acquisition_propose")
    assert at.selectbox(key="acquisition_answers_round").value == 1


# ---------------------------------------------------------------------- annotations


def test_annotations_correct_and_undo(trained_copy):
    at = open_app(trained_copy, "annotations")
    first = at.data_editor(key="annotations_editor").value.iloc[0]
    new_value = "rotten" if first["verdict"] == "fresh" else "fresh"
    at.session_state["annotations_editor"] = {
        "edited_rows": {0: {"verdict": new_value}}, "added_rows": [], "deleted_rows": [],
    }
    at.run()
    at.button(key="annotations_save").click().run()
    assert not at.exception
    with Studio.open(trained_copy) as studio:
        current = studio.project.annotations(text_ids=[first["text_id"]], node="verdict")
        entry = int(studio.project.audit_log()["id"].iloc[-1])
    assert current["value"].tolist() == [new_value]
    assert current["source"].tolist() == ["human"]

    at.button(key=f"annotations_undo_{entry}").click().run()
    assert not at.exception
    with Studio.open(trained_copy) as studio:
        current = studio.project.annotations(text_ids=[first["text_id"]], node="verdict")
    assert current["value"].tolist() == [first["verdict"]]


def test_annotations_filters(trained_copy):
    with Studio.open(trained_copy) as studio:
        corrected = studio.project.annotations(round=1, node="tone").iloc[0]
        other = next(v for v in studio.graph.node("tone").values if v != corrected["value"])
        studio.correct(corrected["text_id"], "tone", other)
    at = open_app(trained_copy, "annotations")
    assert "600 of 600 annotated texts match; showing the first 300" in texts_of(at.caption)
    at.multiselect(key="annotations_rounds").select(1).run()
    round_rows = at.data_editor(key="annotations_editor").value
    assert len(round_rows) == 120
    assert set(round_rows["split"]) == {"pool"}
    at.selectbox(key="annotations_source").select("human").run()
    human_rows = at.data_editor(key="annotations_editor").value
    assert human_rows["text_id"].tolist() == [corrected["text_id"]]
    assert human_rows["tone"].tolist() == [other]
    at.selectbox(key="annotations_source").select("(any)").run()
    at.checkbox(key="annotations_disagree").check().run()
    disagreeing = at.data_editor(key="annotations_editor").value
    assert 0 < len(disagreeing) < 120
    assert (disagreeing["disagreements"] > 0).all()


# ---------------------------------------------------------------------- training, diagnostics


def test_training_targeted_run_lists_reasons(trained_copy):
    at = open_app(trained_copy, "training")
    at.number_input(key="training_epochs").set_value(FAST_EPOCHS)
    at.number_input(key="training_top_k").set_value(2)
    at.button(key="training_targeted").click().run()
    finish_job(at, trained_copy)
    assert "retrained" in texts_of(at.success)
    runs = at.dataframe[0].value
    assert list(runs["kind"]) == ["targeted", "full"]
    assert len(runs["modules trained"].iloc[0].split(", ")) == 2
    assert any(e.label.startswith("Why run 2 retrained") for e in at.expander)
    assert at.get("plotly_chart"), "no learning curve"


def test_diagnostics_heatmap_and_playground(trained_copy):
    at = open_app(trained_copy, "diagnostics")
    spec = at.get("plotly_chart")[0].proto.spec
    assert '"type":"heatmap"' in spec.replace(" ", "")
    at.text_area(key="diagnostics_text").input("A dull, lifeless film.").run()
    assert not at.exception
    assert len(at.metric) == 2
    at.selectbox(key="diagnostics_do_ironic").select("no")
    at.selectbox(key="diagnostics_do_tone").select("positive").run()
    assert at.metric[1].value == "fresh"
    at.selectbox(key="diagnostics_do_tone").select("negative").run()
    assert at.metric[1].value == "rotten"


def test_export_offers_downloads(trained_copy):
    at = open_app(trained_copy, "export")
    at.button(key="export_prepare").click().run()
    assert not at.exception
    labels = [e.proto.label for e in at.get("download_button")]
    assert "Download the student bundle (zip)" in labels
    assert "Annotations as PARQUET" in labels
