"""Views of a project for people: diagnostics, curves, interventions, graph-edit plans.

`InsightMixin` is part of `gcp.loop.Studio`. Its methods only read the store and the
current student and return pandas frames or plain dicts that the app shows directly and
the CLI prints as JSON. Computing the numbers is `gcp.diagnostics`' job.
"""

from __future__ import annotations

import inspect
import io
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from gcp.diagnostics import (
    confusion_matrix,
    error_attribution,
    node_accuracy,
    uncertainty_matrix,
)
from gcp.exceptions import GCPError, ProjectError
from gcp.graph import ConceptGraph, diff

EXPORT_FORMATS = ("csv", "jsonl", "parquet")
PROPOSAL_EXAMPLES = 20  # labelled texts shown to the teacher when it proposes a graph


class InsightMixin:
    """Read-only views of `gcp.loop.Studio`."""

    def _evaluation_rows(self) -> tuple[list[str], np.ndarray, np.ndarray, list[Any]]:
        """Ids, embeddings, teacher label matrix and gold labels of the evaluation texts.

        Uses the test split when the teacher answered it, else the labelled pool.
        """
        test = self.project.texts("test")
        labelled = set(self.project.labelled_ids())
        ids = [i for i in test["id"] if i in labelled] or self.labelled_pool_ids()
        if not ids:
            raise ProjectError("no text has a teacher answer yet: annotate a round first")
        ids, Y = self.project.label_matrix(self.graph, ids)
        _, X = self.embeddings(ids)
        gold = self.project.texts(ids=ids).set_index("id").loc[ids, "gold_label"].tolist()
        return ids, X, Y, gold

    def _require_student(self) -> Any:
        student = self.student
        if student is None:
            raise ProjectError("no student is trained yet: train one first")
        if student.graph.content_hash != self.graph.content_hash:
            raise ProjectError(
                "the graph changed since the last training: retrain before diagnosing"
            )
        return student

    def diagnose(self, *, mc_samples: int = 0) -> dict[str, Any]:
        """Per-node accuracy and confusion, the texts x nodes uncertainty and error attribution.

        Returns
        -------
        dict
            ``node_accuracy`` (DataFrame), ``uncertainty`` (DataFrame, texts x nodes, values
            in [0, 1]), ``attribution`` (DataFrame per node), ``errors`` (DataFrame per
            wrong text), ``confusion`` (node -> DataFrame), ``target`` (``"gold"`` or
            ``"teacher"``), ``n_texts`` and ``n_errors``.
        """
        student = self._require_student()
        ids, X, Y, gold = self._evaluation_rows()
        has_gold = any(isinstance(g, str) and g for g in gold)
        attribution = error_attribution(student, X, Y, gold=gold if has_gold else None, ids=ids)
        return {
            "node_accuracy": node_accuracy(student, X, Y),
            "uncertainty": uncertainty_matrix(student, X, n_samples=mc_samples, ids=ids),
            "attribution": attribution.per_node,
            "errors": attribution.per_text,
            "confusion": {n: confusion_matrix(student, X, Y, n) for n in student.graph.names},
            "target": attribution.target,
            "n_texts": attribution.n_texts,
            "n_errors": attribution.n_errors,
        }

    def node_metrics(self, report: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
        """Per-node numbers the graph view colours by, from `diagnose`.

        ``accuracy`` is agreement with the teacher's values, ``uncertainty`` the mean
        normalized entropy and ``error_share`` the share of wrong outputs that correcting
        the node fixes.
        """
        report = report if report is not None else self.diagnose()
        accuracy = report["node_accuracy"].set_index("node")["accuracy"]
        uncertainty = report["uncertainty"].mean(axis=0)
        attribution = report["attribution"].set_index("node")["share_fixed"]
        metrics: dict[str, dict[str, float]] = {"accuracy": {}, "uncertainty": {},
                                                "error_share": {}}
        for name in self.graph.names:
            for key, series in (("accuracy", accuracy), ("uncertainty", uncertainty),
                                ("error_share", attribution)):
                value = series.get(name)
                if value is not None and not math.isnan(float(value)):
                    metrics[key][name] = float(value)
        return metrics

    def predictions(self, ids: list[str]) -> pd.DataFrame | None:
        """Predicted value of every node for texts `ids`, or None without a current student."""
        student = self.student
        if student is None or not ids or student.graph.content_hash != self.graph.content_hash:
            return None
        ids, X = self.embeddings(ids)
        predicted = student.predict(X)
        columns = {
            name: np.asarray(student.graph.node(name).values, dtype=object)[indices]
            for name, indices in predicted.items()
        }
        return pd.DataFrame(columns, index=pd.Index(ids, name="text_id"))

    def round_text_uncertainty(self, number: int) -> tuple[pd.DataFrame, pd.Series]:
        """Uncertainty (texts x nodes) of the texts annotated in round `number`, and per
        text whether the student's output differs from the teacher's label."""
        student = self.student
        graph = self.graph
        labels = self.project.annotations(round=number, node=graph.output)
        ids = list(dict.fromkeys(labels["text_id"]))
        if student is None or not ids:
            return pd.DataFrame(columns=graph.names), pd.Series(dtype=bool)
        ids, X = self.embeddings(ids)
        frame = uncertainty_matrix(student, X, ids=ids)
        predicted = np.asarray(graph.labels, dtype=object)[student.predict(X)[graph.output]]
        teacher = labels.drop_duplicates("text_id", keep="last").set_index("text_id")["value"]
        wrong = pd.Series(predicted != teacher.reindex(ids).to_numpy(), index=frame.index)
        return frame, wrong

    def propose_graph(self, *, n_examples: int = PROPOSAL_EXAMPLES) -> ConceptGraph:
        """Ask the teacher to propose a concept graph for the current task and labels.

        Raises
        ------
        TeacherError
            If the teacher is offline (it cannot propose) or its proposal is rejected; the
            message gives the reasons.
        """
        graph = self.graph
        texts = self.project.texts("pool")
        with_gold = texts[texts["gold_label"].notna()]
        sample = (with_gold if len(with_gold) else texts).head(n_examples)
        examples = [
            (str(row.text), str(row.gold_label)) if isinstance(row.gold_label, str)
            else str(row.text)
            for row in sample.itertuples()
        ]
        teacher = self.teacher
        if "output" in inspect.signature(teacher.propose_graph).parameters:
            # Keep the output node's name, so stored labels and students still match it.
            return teacher.propose_graph(graph.task, list(graph.labels), examples,
                                         output=graph.output)
        return teacher.propose_graph(graph.task, list(graph.labels), examples)

    def round_uncertainty(self) -> pd.DataFrame:
        """Mean normalized uncertainty per node of the texts acquired in each round."""
        student = self._require_student()
        frame = self.project.annotations(node=self.graph.output)
        frame = frame.dropna(subset=["round"])
        if frame.empty:
            return pd.DataFrame(columns=self.graph.names)
        ids = list(frame["text_id"])
        _, X = self.embeddings(ids)
        matrix = uncertainty_matrix(student, X, ids=ids)
        matrix["round"] = frame["round"].astype(int).to_numpy()
        return matrix.groupby("round").mean()

    def learning_curve(self) -> pd.DataFrame:
        """Return one row per finished round: strategy, labels, cost, accuracy, teacher agreement."""
        rounds = self.project.rounds()
        columns = ["round", "strategy", "labels", "cost", "accuracy", "teacher_agreement"]
        if rounds.empty:
            return pd.DataFrame(columns=columns)
        done = rounds[rounds["status"] == "done"]
        rows = []
        for _, row in done.iterrows():
            metrics = row["metrics"] or {}
            rows.append({
                "round": int(row["number"]), "strategy": row["strategy"],
                "labels": int(row["labels_used"] or 0), "cost": float(row["money_spent"] or 0.0),
                "accuracy": metrics.get("accuracy"),
                "teacher_agreement": metrics.get("teacher_agreement"),
            })
        return pd.DataFrame(rows, columns=columns)

    def node_predictions(self, text: str,
                         interventions: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Predict every node's value for one text, under optional ``do()`` interventions.

        Returns a frame in topological order with ``node``, ``value`` (the most likely
        one), ``probability``, ``intervened`` and ``distribution`` (value -> probability).
        """
        student = self._require_student()
        if not isinstance(text, str) or not text.strip():
            raise GCPError("type a non-empty text to predict")
        X = self.encoder.encode([text])
        interventions = {k: v for k, v in (interventions or {}).items() if v is not None}
        probs = (student.intervene_proba(X, interventions) if interventions
                 else student.predict_proba(X))
        rows = []
        for name in student.graph.topological_order:
            values = student.graph.node(name).values
            p = probs[name][0]
            best = int(p.argmax())
            rows.append({
                "node": name, "value": values[best], "probability": float(p[best]),
                "intervened": name in interventions,
                "distribution": {v: float(q) for v, q in zip(values, p)},
            })
        return pd.DataFrame(rows)

    def plan_graph_edit(self, new_graph: ConceptGraph) -> dict[str, Any]:
        """Plan what saving `new_graph` would mean: the diff, re-annotations and retraining."""
        change = diff(self.graph, new_graph)
        labelled = len(self.project.labelled_ids())
        return {
            "diff": change,
            "summary": change.summary(),
            "reannotate": list(change.reannotate_nodes),
            "retrain": change.retrain_nodes(new_graph),
            "texts_to_reannotate": labelled if change.reannotate_nodes else 0,
        }

    def save_graph(self, new_graph: ConceptGraph, message: str = "", *,
                   user: str = "user") -> int:
        """Store `new_graph` as the current version and return its version number.

        Annotations of a renamed node move to its new name, because a rename keeps the
        question and values the teacher answered.
        """
        renames = diff(self.graph, new_graph).renamed_nodes
        version = self.project.save_graph(new_graph, message, user=user)
        for old, new in renames:
            self.project.rename_annotation_node(old, new)
        return version

    def revert_graph(self, version: int, *, user: str = "user") -> int:
        """Make graph `version` current again; returns the audit edit id."""
        renames = diff(self.graph, self.project.graph(version)).renamed_nodes
        edit = self.project.revert_graph(version, user=user)
        for old, new in renames:
            self.project.rename_annotation_node(old, new)
        return edit

    def correct(self, text_id: str, node: str, value: str, *, user: str = "user") -> int:
        """Record a human value for one node of one text; returns the audit edit id."""
        return self.project.correct_annotation(text_id, node, value, user)

    def undo(self, edit_id: int, *, user: str = "user") -> int:
        return self.project.undo(edit_id, user=user)

    def annotation_table(self) -> pd.DataFrame:
        """Current annotations, one row per text and one column per node, with the text."""
        frame = self.project.annotations()
        if frame.empty:
            return pd.DataFrame(columns=["text_id", "text", *self.graph.names])
        wide = frame.pivot_table(index="text_id", columns="node", values="value",
                                 aggfunc="last")
        texts = self.project.texts(ids=list(wide.index)).set_index("id")
        wide.insert(0, "text", texts.loc[wide.index, "text"])
        wide.insert(1, "split", texts.loc[wide.index, "split"])
        wide.insert(2, "gold_label", texts.loc[wide.index, "gold_label"])
        return wide.reset_index()

    def export_annotations(self, fmt: str) -> bytes:
        """Serialize every annotation (superseded ones included) as CSV, JSONL or Parquet bytes."""
        if fmt not in EXPORT_FORMATS:
            raise GCPError(f"unknown export format {fmt!r}: use one of {list(EXPORT_FORMATS)}")
        frame = self.project.annotations(current_only=False)
        if fmt == "csv":
            return frame.to_csv(index=False).encode("utf-8")
        if fmt == "jsonl":
            lines = (json.dumps(row, default=str) for row in frame.to_dict(orient="records"))
            return ("\n".join(lines) + "\n").encode("utf-8")
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()

    def status(self) -> dict[str, Any]:
        """Overview numbers for the app's cards and `gcp status`."""
        budget = self.budget()
        runs = self.project.training_runs()
        latest = runs.iloc[-1]["metrics"] if not runs.empty else {}
        rounds = self.project.rounds()
        teacher = self.teacher_config() or {}
        return {
            "texts": self.project.count_texts(),
            "pool": self.project.count_texts("pool"),
            "test": self.project.count_texts("test"),
            "labels": len(self.labelled_pool_ids()),
            "cost": self.project.spending()["money"],
            "rounds": 0 if rounds.empty else int((rounds["status"] == "done").sum()),
            "open_round": (self.project.open_round() or {}).get("number"),
            "accuracy": (latest or {}).get("accuracy"),
            "teacher_agreement": (latest or {}).get("teacher_agreement"),
            "teacher": teacher.get("kind"),
            "budget_labels": budget.get("labels"),
            "budget_money": budget.get("money"),
            "graph_version": self.project.graph_version,
            "training_runs": len(runs),
        }
