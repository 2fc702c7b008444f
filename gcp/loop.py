"""The distillation loop: one `Studio` object over a project folder.

A round goes propose -> approve -> annotate -> train -> evaluate, and every step writes its
result to the project store before the next one starts, so a killed process resumes where
it stopped (`Studio.run` picks up an open round by its status). The CLI and the app call
this module; it composes the store, the encoder, the teachers, acquisition and training
but implements none of them. Views for people (diagnostics, curves, interventions)
live in `gcp.insight`; the exported bundle and `predict` live in `gcp.bundle`.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gcp.acquisition import AcquisitionConfig, criticality_weights, select_batch, seed_strategies
from gcp.bundle import write_bundle
from gcp.data_import import import_texts
from gcp.embedding_cache import EmbeddingCache
from gcp.encoder import EncoderConfig, TextEncoder, embed_texts
from gcp.exceptions import BudgetExceededError, GCPError, ProjectError, TeacherError
from gcp.graph import ConceptGraph, diff
from gcp.insight import InsightMixin
from gcp.store import Project
from gcp.student import GCPStudent, StudentConfig, load_student
from gcp.teachers import AnswerCache, Teacher, TextItem, teacher_from_config
from gcp.training import TrainConfig, counterfactual_impact, fit_student, targeted_retrain

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]
TEACHER_DIR = "teacher"  # recorded-answer files are copied here so a project is self-contained
ANNOTATE_CHUNK = 8  # texts per teacher call; the store commits after each chunk
_ENCODERS: dict[str, TextEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def shared_encoder(model: str) -> TextEncoder:
    """Return one loaded encoder per model name for the whole process."""
    with _ENCODERS_LOCK:
        if model not in _ENCODERS:
            _ENCODERS[model] = TextEncoder(EncoderConfig(model=model))
        return _ENCODERS[model]


@dataclass
class RoundSummary:
    """Summary of one finished round, as `Studio.run` reports it."""

    number: int  # round number in the store, from 1
    strategy: str  # acquisition strategy that chose the texts
    labels: int  # pool texts with teacher answers after the round
    cost: float  # USD spent by the project so far
    accuracy: float | None  # on the evaluation split against gold labels
    teacher_agreement: float | None  # on the evaluation split against the teacher's labels
    trained_nodes: list[str] = field(default_factory=list)  # modules updated in the round
    stopped: str | None = None  # why the loop stopped after this round, if it did

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Studio(InsightMixin):
    """A project opened for work: texts, teacher, student and rounds.

    Use `Studio.open` or `Studio.create`. The encoder and the teacher load on first use,
    and the latest checkpoint is the current student.

    Parameters
    ----------
    project : Project
        An open project store.
    api_key : str, optional
        Key for an OpenAI-compatible teacher; default: the ``OPENAI_API_KEY`` variable.
        It stays in memory and is never written to the project.
    """

    def __init__(self, project: Project, *, api_key: str | None = None) -> None:
        self.project = project
        self._api_key = api_key
        self._teacher: Teacher | None = None
        self._student: GCPStudent | None = None
        self._student_run: int | None = None
        self._cache: EmbeddingCache | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, folder: str | Path, *, db_url: str | None = None,
             api_key: str | None = None) -> Studio:
        """Open an existing project folder."""
        return cls(Project.open(folder, db_url=db_url), api_key=api_key)

    @classmethod
    def create(
        cls,
        folder: str | Path,
        *,
        graph: ConceptGraph | str | Path,
        data: str | Path | pd.DataFrame | None = None,
        text_column: str = "text",
        id_column: str | None = None,
        label_column: str | None = None,
        test_size: float = 0.2,
        seed: int = 0,
        db_url: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Studio:
        """Create a project with a graph and, optionally, import its texts.

        Raises
        ------
        ProjectError
            If the folder already contains a project.
        DataImportError
            If the data is invalid; the project then exists without texts.
        """
        if not isinstance(graph, ConceptGraph):
            graph = ConceptGraph.load(graph)
        project = Project.create(folder, graph=graph, db_url=db_url)
        project.set_setting("encoder", "all-MiniLM-L6-v2")
        project.set_setting("seed", int(seed))
        studio = cls(project)
        if data is not None:
            studio.import_data(data, text_column=text_column, id_column=id_column,
                               label_column=label_column, test_size=test_size, seed=seed,
                               on_progress=on_progress)
        return studio

    def import_data(self, data: str | Path | pd.DataFrame, *, text_column: str = "text",
                    id_column: str | None = None, label_column: str | None = None,
                    test_size: float = 0.2, seed: int = 0,
                    on_progress: ProgressCallback | None = None) -> Any:
        """Import texts into the project (all or nothing); see `gcp.data_import.import_texts`."""
        return import_texts(self.project, data, text_column=text_column, id_column=id_column,
                            label_column=label_column, test_size=test_size, seed=seed,
                            on_progress=on_progress)

    def close(self) -> None:
        self.project.close()

    def __enter__(self) -> Studio:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def folder(self) -> Path:
        return self.project.folder

    @property
    def graph(self) -> ConceptGraph:
        """The current graph version."""
        return self.project.graph()

    # ------------------------------------------------------------------ settings

    def set_teacher(self, config: Mapping[str, Any], *, api_key: str | None = None) -> None:
        """Choose the teacher: ``{"kind": "recorded", "path": ...}``, ``"rules"`` or ``"openai"``.

        A recorded file is copied into the project folder. The config is checked by building
        the teacher before it is saved; an API key is kept in memory only.
        """
        config = dict(config)
        if api_key is not None:
            self._api_key = api_key
        if config.get("kind") == "recorded" and "path" in config:
            source = Path(config["path"])
            if not source.is_absolute() and (self.folder / source).is_file():
                source = self.folder / source
            config["path"] = self._copy_recorded_file(source)
        teacher = self._build_teacher(config)
        if config.get("kind") == "recorded":
            teacher.check_columns(self.graph.names)
        self.project.set_setting("teacher", config)
        with self._lock:
            self._teacher = teacher
        logger.info("teacher set to %s", teacher.name)

    def _copy_recorded_file(self, source: Path) -> str:
        if not source.is_file():
            raise TeacherError(f"recorded teacher file not found: {str(source)!r}")
        target_dir = self.folder / TEACHER_DIR
        target_dir.mkdir(exist_ok=True)
        target = target_dir / source.name
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        return f"{TEACHER_DIR}/{source.name}"

    def teacher_config(self) -> dict[str, Any] | None:
        return self.project.get_setting("teacher")

    def _build_teacher(self, config: Mapping[str, Any]) -> Teacher:
        config = dict(config)
        if config.get("kind") == "recorded" and "path" in config:
            path = Path(config["path"])
            config["path"] = path if path.is_absolute() else self.folder / path
        labels = None
        if config.get("kind") == "rules":
            texts = self.project.texts()
            labels = {i: g for i, g in zip(texts["id"], texts["gold_label"]) if isinstance(g, str)}
        cache = AnswerCache(self.project.engine) if config.get("kind") == "openai" else None
        return teacher_from_config(config, cache=cache, api_key=self._api_key, labels=labels)

    @property
    def teacher(self) -> Teacher:
        """The configured teacher, built on first use."""
        with self._lock:
            if self._teacher is None:
                config = self.teacher_config()
                if not config:
                    raise TeacherError(
                        "no teacher is configured: choose one with `gcp teacher PROJECT ...` "
                        "or on the Project page"
                    )
                self._teacher = self._build_teacher(config)
            return self._teacher

    def check_teacher(self) -> str:
        """Return a short message if the teacher responds; raise TeacherError if not."""
        teacher = self.teacher
        check = getattr(teacher, "check_connection", None)
        if check is None:
            return f"{teacher.name} is an offline teacher: nothing to connect to"
        return check()

    def set_budget(self, *, labels: int | None = None, money: float | None = None) -> None:
        """Set the label and money budgets; None removes a limit."""
        if labels is not None and labels < 0 or money is not None and money < 0:
            raise ProjectError(f"invalid budget labels={labels!r} money={money!r}: use >= 0")
        self.project.set_setting("budget", {"labels": labels, "money": money})

    def budget(self) -> dict[str, Any]:
        return self.project.get_setting("budget") or {"labels": None, "money": None}

    # ------------------------------------------------------------------ embeddings

    @property
    def encoder(self) -> TextEncoder:
        return shared_encoder(self.project.get_setting("encoder", "all-MiniLM-L6-v2"))

    def embeddings(self, ids: Sequence[str] | None = None, *,
                   on_progress: ProgressCallback | None = None) -> tuple[list[str], np.ndarray]:
        """Return ids and their cached embeddings, encoding the texts not yet cached."""
        texts = self.project.texts(ids=list(ids) if ids is not None else None)
        if ids is not None:
            texts = texts.set_index("id").loc[list(ids)].reset_index()
        with self._lock:
            if self._cache is None:
                self._cache = EmbeddingCache(self.project.embeddings_dir, self.encoder.model_id)
            cache = self._cache
        matrix = embed_texts(list(texts["text"]), encoder=self.encoder, cache=cache,
                             on_progress=on_progress)
        return list(texts["id"]), matrix

    # ------------------------------------------------------------------ student

    @property
    def student(self) -> GCPStudent | None:
        """The student of the latest training run, or None before any training."""
        runs = self.project.training_runs()
        if runs.empty:
            return None
        latest = runs.iloc[-1]
        with self._lock:
            if self._student_run != int(latest["id"]):
                path = self.folder / str(latest["checkpoint_path"])
                self._student = load_student(path)
                self._student_run = int(latest["id"])
            return self._student

    def node_weights(self) -> dict[str, float] | None:
        """Criticality weights from the latest run's counterfactual impacts, if any."""
        runs = self.project.training_runs()
        if runs.empty or not runs.iloc[-1]["scores"]:
            return None
        scores = {k: v for k, v in runs.iloc[-1]["scores"].items() if k in self.graph}
        return criticality_weights(scores) if scores else None

    # ------------------------------------------------------------------ rounds

    def labelled_pool_ids(self) -> list[str]:
        """Pool texts with a current value for the output node."""
        pool = set(self.project.pool_ids())
        return [i for i in self.project.labelled_ids() if i in pool]

    def _remaining_labels(self) -> int | None:
        limit = self.budget().get("labels")
        if limit is None:
            return None
        return max(0, int(limit) - len(self.labelled_pool_ids()))

    def propose_round(self, strategy: str, batch_size: int, *, seed: int = 0,
                      config: AcquisitionConfig | None = None,
                      on_progress: ProgressCallback | None = None) -> int:
        """Score the unlabelled pool and store a pending round of ranked candidates.

        Raises
        ------
        ProjectError
            If another round is still open.
        BudgetExceededError
            If the label budget is used up.
        AcquisitionError, EmptyPoolError
            For an unknown strategy, a strategy that needs a student before the first
            training, or an empty pool.
        """
        open_round = self.project.open_round()
        if open_round is not None:
            raise ProjectError(
                f"round {open_round['number']} is still {open_round['status']!r}: finish it "
                "(approve, annotate, train) or cancel it before proposing another"
            )
        remaining = self._remaining_labels()
        if remaining == 0:
            raise BudgetExceededError(
                f"the label budget of {self.budget()['labels']} texts is used up; raise it "
                "to acquire more"
            )
        if remaining is not None and batch_size > remaining:
            logger.info("batch size %d clipped to the %d labels left", batch_size, remaining)
            batch_size = remaining
        labelled = self.labelled_pool_ids()
        unlabelled = self.project.unlabelled_ids()
        student = self.student if strategy not in seed_strategies else None
        pool_ids, pool_x = self.embeddings(unlabelled, on_progress=on_progress)
        _, labelled_x = self.embeddings(labelled) if labelled else ([], None)
        candidates = select_batch(
            strategy, pool_ids=pool_ids, pool_embeddings=pool_x, labelled_embeddings=labelled_x,
            batch_size=batch_size, student=student, graph=self.graph,
            node_weights=self.node_weights(), config=config, seed=seed,
        )
        number = self.project.create_round(strategy=strategy, batch_size=batch_size, seed=seed)
        self.project.set_candidates(number, [
            {"text_id": c.text_id, "score": c.score, "rank": c.rank, "breakdown": c.breakdown}
            for c in candidates
        ])
        logger.info("round %d proposed: %d candidates by %r", number, len(candidates), strategy)
        return number

    def candidates(self, number: int) -> pd.DataFrame:
        """Candidates of a round with their texts, by rank."""
        frame = self.project.candidates(number)
        texts = self.project.texts(ids=list(frame["text_id"]))[["id", "text"]]
        merged = frame.merge(texts, left_on="text_id", right_on="id", how="left")
        return merged.drop(columns=["id"]).sort_values("rank").reset_index(drop=True)

    def decide(self, number: int, ids: Sequence[str] | None = None, *, approved: bool,
               user: str = "user") -> int:
        """Approve or reject candidates of a pending round; ``ids=None`` means all of them."""
        if ids is None:
            ids = list(self.project.candidates(number)["text_id"])
        return self.project.decide(number, list(ids), approved, user)

    def _items(self, ids: Sequence[str]) -> list[TextItem]:
        texts = self.project.texts(ids=list(ids)).set_index("id")
        return [TextItem(id=i, text=str(texts.at[i, "text"])) for i in ids]

    def estimate_cost(self, number: int) -> dict[str, Any]:
        """Estimate what annotating the approved (or all pending) candidates will cost."""
        frame = self.project.candidates(number)
        approved = frame[frame["decision"] == "approved"]
        ids = list((approved if len(approved) else frame)["text_id"])
        estimate = self.teacher.estimate_cost(self.graph, self._items(ids))
        return {"n_texts": estimate.n_texts, "n_cached": estimate.n_cached,
                "cost": estimate.cost, "input_tokens": estimate.input_tokens,
                "output_tokens": estimate.output_tokens}

    def annotate(self, number: int | None = None, *,
                 on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Ask the teacher about the approved texts of a round that have no answer yet.

        Answers are stored after every chunk of `ANNOTATE_CHUNK` texts, so an interrupted
        call keeps what arrived and a second call sends only what is missing.
        """
        number = number if number is not None else self._open_round_number()
        info = self.project.round(number)
        if info["status"] == "pending":
            if self.project.candidates(number, decision="approved").empty:
                raise ProjectError(
                    f"round {number} has no approved candidates: approve some first"
                )
            self.project.update_round(number, status="approved")
        elif info["status"] != "approved":
            raise ProjectError(f"round {number} is {info['status']!r}; nothing to annotate")
        todo = self.project.approved_unlabelled_ids(number)
        summary = self._annotate_ids(todo, round_number=number, on_progress=on_progress)
        if not self.project.approved_unlabelled_ids(number):
            self.project.update_round(number, status="annotated",
                                      labels_used=len(self.labelled_pool_ids()),
                                      money_spent=self.project.spending()["money"])
        return summary

    def _annotate_ids(self, ids: Sequence[str], *, round_number: int | None,
                      on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        teacher, graph = self.teacher, self.graph
        version = self.project.graph_version
        summary = {"answered": 0, "failed": 0, "skipped": 0, "cost": 0.0, "errors": []}
        for start in range(0, len(ids), ANNOTATE_CHUNK):
            chunk = self._items(ids[start:start + ANNOTATE_CHUNK])
            money = self.budget().get("money")
            left = None if money is None else max(0.0, money - self.project.spending()["money"])
            batch = teacher.annotate(graph, chunk, budget=left)
            rows = [a for a in batch.annotations if a.status == "ok"]
            if rows:
                self.project.add_annotations(
                    {"text_id": a.text_id, "values": a.values, "source": a.source,
                     "teacher": a.teacher, "model": a.model, "prompt_version": a.prompt_version,
                     "cost": a.cost, "round": round_number, "graph_version": version}
                    for a in rows
                )
            summary["answered"] += len(rows)
            summary["failed"] += len(batch.failed)
            summary["skipped"] += len(batch.skipped)
            summary["cost"] += batch.cost
            summary["errors"] += [f"{a.text_id}: {a.error}" for a in batch.failed][:20]
            if on_progress is not None:
                on_progress(min(start + len(chunk), len(ids)), len(ids),
                            f"{summary['answered']} answered, {summary['failed']} failed")
            if batch.stopped_reason == "budget":
                summary["stopped"] = "budget"
                break
        return summary

    def annotate_evaluation_split(self, *, paid: bool = False,
                                  on_progress: ProgressCallback | None = None) -> dict:
        """Annotate the evaluation texts so that teacher agreement can be measured.

        Offline teachers (recorded file, rules) cost nothing and are always asked. An LLM
        teacher is asked only with ``paid=True``, because it spends budget on texts that
        never train the student.
        """
        if self.teacher.source == "teacher" and not paid:
            return {"answered": 0, "skipped": 0, "reason": "paid teacher"}
        test_ids = list(self.project.texts("test")["id"])
        done = set(self.project.labelled_ids())
        todo = [i for i in test_ids if i not in done]
        if not todo:
            return {"answered": 0, "skipped": 0}
        return self._annotate_ids(todo, round_number=None, on_progress=on_progress)

    def _open_round_number(self) -> int:
        info = self.project.open_round()
        if info is None:
            raise ProjectError("no round is open: propose one first")
        return int(info["number"])

    # ------------------------------------------------------------------ training

    def training_data(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Ids, embeddings and label matrix of the labelled pool texts."""
        ids = self.labelled_pool_ids()
        if not ids:
            raise ProjectError("no pool text has a teacher answer yet: annotate a round first")
        ids, Y = self.project.label_matrix(self.graph, ids)
        _, X = self.embeddings(ids)
        return ids, X, Y

    def train(self, *, targeted: bool = False, top_k: int = 2, seed: int | None = None,
              config: TrainConfig | None = None, student_config: StudentConfig | None = None,
              on_progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Train the student on every labelled pool text, or retrain the top-k modules.

        A targeted run after a graph edit retrains the new and changed nodes and their
        descendants instead of the top-k nodes.
        """
        seed = self.project.get_setting("seed", 0) if seed is None else seed
        config = config or TrainConfig(seed=seed)
        started = time.perf_counter()
        ids, X, Y = self.training_data()
        graph = self.graph
        previous = self.student
        if targeted and previous is not None:
            result = self._retrain(previous, X, Y, top_k=top_k, config=config,
                                   on_progress=on_progress)
            student, kind, trained, scores = result
        else:
            student = GCPStudent(graph, input_dim=X.shape[1], config=student_config, seed=seed)
            fit = fit_student(student, X, Y, config=config, on_progress=on_progress)
            kind, trained = "full", fit.trained_nodes
            scores = counterfactual_impact(student, X, Y)
        return self._record_run(student, kind=kind, trained=trained, scores=scores,
                                n_train=len(ids), seconds=time.perf_counter() - started)

    def _retrain(self, previous: GCPStudent, X: np.ndarray, Y: np.ndarray, *, top_k: int,
                 config: TrainConfig, on_progress: ProgressCallback | None) -> tuple:
        graph = self.graph
        nodes = None
        if previous.graph.content_hash != graph.content_hash:
            change = diff(previous.graph, graph)
            student, _ = GCPStudent.from_previous(previous, graph)
            nodes = change.retrain_nodes(graph) or None
        else:
            student, _ = GCPStudent.from_previous(previous, graph)
        result = targeted_retrain(student, X, Y, top_k=top_k, nodes=nodes, config=config,
                                  on_progress=on_progress)
        return student, "targeted", result.chosen, result.scores

    def _record_run(self, student: GCPStudent, *, kind: str, trained: Sequence[str],
                    scores: Mapping[str, float], n_train: int,
                    seconds: float) -> dict[str, Any]:
        """Save the checkpoint, evaluate it and close the round it was trained for."""
        runs = self.project.training_runs()
        run_number = 1 if runs.empty else int(runs["id"].max()) + 1
        path = self.project.checkpoints_dir / f"run-{run_number:04d}"
        student.save(path)
        with self._lock:
            self._student, self._student_run = None, None
        self._annotate_evaluation_quietly()
        metrics = self.evaluate_student(student)
        metrics["n_train"] = n_train
        open_round = self.project.open_round()
        round_number = None
        if open_round is not None and open_round["status"] == "annotated":
            round_number = int(open_round["number"])
        run_id = self.project.record_training_run(
            trained_nodes=list(trained), kind=kind, checkpoint_path=path, metrics=metrics,
            scores={k: float(v) for k, v in scores.items()}, seconds=seconds,
            graph_version=self.project.graph_version, round=round_number,
        )
        if round_number is not None:
            self.project.update_round(round_number, status="trained", metrics=metrics)
            self._close_round(round_number)
        logger.info("training run %d (%s): accuracy %s", run_id, kind, metrics.get("accuracy"))
        return {"run": run_id, "kind": kind, "trained_nodes": list(trained),
                "scores": dict(scores), "metrics": metrics, "seconds": seconds,
                "closed_round": round_number}

    def _close_round(self, number: int) -> dict[str, Any]:
        """Evaluate and mark a trained round done, so it joins the learning curve."""
        metrics = self.evaluate()
        self.project.update_round(number, status="done", metrics=metrics,
                                  labels_used=metrics["labels"], money_spent=metrics["cost"])
        return metrics

    def _annotate_evaluation_quietly(self) -> None:
        if not self.teacher_config():
            return
        try:
            self.annotate_evaluation_split()
        except GCPError as err:
            logger.warning("could not annotate the evaluation split: %s", err)

    # ------------------------------------------------------------------ evaluation

    def evaluate_student(self, student: GCPStudent | None) -> dict[str, Any]:
        """Accuracy against gold and agreement with the teacher on the evaluation split."""
        test = self.project.texts("test")
        result: dict[str, Any] = {"accuracy": None, "teacher_agreement": None,
                                  "n_test": len(test)}
        if student is None or test.empty:
            return result
        ids, X = self.embeddings(list(test["id"]))
        predicted = np.array(student.graph.labels)[student.predict(X)[student.graph.output]]
        gold = test["gold_label"].to_numpy()
        has_gold = np.array([isinstance(g, str) and g != "" for g in gold])
        if has_gold.any():
            result["accuracy"] = float((predicted[has_gold] == gold[has_gold]).mean())
            result["n_gold"] = int(has_gold.sum())
        output = self.project.annotations(node=student.graph.output, split="test")
        output = output[output["source"] != "human"]
        if not output.empty:
            teacher = dict(zip(output["text_id"], output["value"]))
            mask = np.array([i in teacher for i in ids])
            agree = [predicted[k] == teacher[i] for k, i in enumerate(ids) if i in teacher]
            result["teacher_agreement"] = float(np.mean(agree))
            result["n_teacher"] = int(mask.sum())
        return result

    def evaluate(self) -> dict[str, Any]:
        """Metrics of the current student plus labels used, money spent and rounds."""
        self._annotate_evaluation_quietly()
        metrics = self.evaluate_student(self.student)
        rounds = self.project.rounds()
        metrics.update({
            "labels": len(self.labelled_pool_ids()),
            "cost": self.project.spending()["money"],
            "rounds": int((rounds["status"] == "done").sum()) if not rounds.empty else 0,
            "graph_version": self.project.graph_version,
        })
        return metrics

    # ------------------------------------------------------------------ the whole loop

    def run(self, rounds: int, batch_size: int, strategy: str, *, auto_approve: bool = True,
            seed: int = 0, targeted: bool = False, top_k: int = 2,
            seed_strategy: str = "random",
            on_progress: ProgressCallback | None = None) -> list[RoundSummary]:
        """Run `rounds` acquisition rounds, after a seed round when nothing is trained yet.

        An open round is finished first, from the step where it stopped. Without
        `auto_approve` the loop stops at the first pending round and leaves it for a person.
        """
        summaries: list[RoundSummary] = []
        if self.teacher_config():
            self.annotate_evaluation_split()
        open_round = self.project.open_round()
        if open_round is not None:
            summary = self._finish_round(int(open_round["number"]), auto_approve=auto_approve,
                                         targeted=targeted, top_k=top_k)
            if summary is None:
                return summaries
            summaries.append(summary)
        planned = rounds + (1 if self.student is None and not summaries else 0)
        for step in range(planned):
            first = self.student is None
            name = strategy
            if first and strategy not in seed_strategies:
                name = seed_strategy
            try:
                number = self.propose_round(name, batch_size, seed=seed + len(self.project.rounds()))
            except BudgetExceededError as err:
                if summaries:
                    summaries[-1].stopped = str(err)
                break
            summary = self._finish_round(number, auto_approve=auto_approve,
                                         targeted=targeted and not first, top_k=top_k)
            if summary is None:
                break
            summaries.append(summary)
            if on_progress is not None:
                on_progress(step + 1, planned, f"round {number}: accuracy {summary.accuracy}")
            if summary.stopped:
                break
        return summaries

    def _finish_round(self, number: int, *, auto_approve: bool, targeted: bool,
                      top_k: int) -> RoundSummary | None:
        info = self.project.round(number)
        if info["status"] == "pending":
            if not auto_approve:
                logger.info("round %d waits for approval", number)
                return None
            undecided = self.project.candidates(number, decision="pending")
            if not undecided.empty:
                self.decide(number, list(undecided["text_id"]), approved=True, user="auto-approve")
        stopped = None
        if self.project.round(number)["status"] in ("pending", "approved"):
            result = self.annotate(number)
            stopped = result.get("stopped")
            if self.project.round(number)["status"] != "annotated":
                if stopped is None:
                    stopped = f"{result['failed']} texts failed; re-run to retry them"
                return RoundSummary(number, info["strategy"], len(self.labelled_pool_ids()),
                                    self.project.spending()["money"], None, None, [], stopped)
        trained: list[str] = []
        if self.project.round(number)["status"] == "annotated":
            trained = self.train(targeted=targeted, top_k=top_k)["trained_nodes"]
        if self.project.round(number)["status"] == "trained":
            self._close_round(number)
        metrics = self.project.round(number)["metrics"] or self.evaluate()
        return RoundSummary(number, info["strategy"], metrics["labels"], metrics["cost"],
                            metrics["accuracy"], metrics["teacher_agreement"], trained, stopped)


    # ------------------------------------------------------------------ export

    def export(self, out_dir: str | Path) -> Path:
        """Write the latest student, its encoder name and the teacher config to `out_dir`."""
        runs = self.project.training_runs()
        if runs.empty:
            raise ProjectError("no student is trained yet: train one before exporting")
        latest = runs.iloc[-1]
        return write_bundle(
            out_dir, checkpoint=self.folder / str(latest["checkpoint_path"]),
            encoder=self.project.get_setting("encoder", "all-MiniLM-L6-v2"),
            teacher=self.teacher_config(), project_folder=self.folder,
            metrics=latest["metrics"],
        )

    def cancel_round(self, number: int | None = None) -> None:
        """Cancel an open round; its annotations stay, its undecided candidates are dropped."""
        number = number if number is not None else self._open_round_number()
        self.project.update_round(number, status="cancelled")


def demo_project(path: str | Path | None = None) -> Path:
    """Return the demo project folder, building it from the bundled assets on first use.

    The folder defaults to ``$GCP_PROJECT_DIR`` or ``projects/demo`` in the repository.
    It is built in a temporary folder and renamed into place, so two processes starting at
    once never see half a project.
    """
    import os
    import tempfile

    assets = Path(__file__).resolve().parent.parent / "assets" / "demo"
    folder = Path(path or os.environ.get("GCP_PROJECT_DIR") or assets.parent.parent / "projects" / "demo")
    if (folder / "project.db").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=folder.parent))
    shutil.rmtree(staging)
    studio = Studio.create(staging, graph=assets / "graph.json", data=assets / "annotations.csv",
                           text_column="text", id_column="id", label_column="gold_label")
    studio.set_teacher({"kind": "recorded", "path": str(assets / "annotations.csv")})
    seeded = assets / "embeddings"
    if seeded.is_dir():
        shutil.copytree(seeded, studio.project.embeddings_dir, dirs_exist_ok=True)
    studio.close()
    try:
        staging.rename(folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "project.db").exists():
            raise
    return folder
