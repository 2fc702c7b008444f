"""Command line: every step of the loop for scripts, as ``python -m gcp`` or ``gcp``.

Each command opens the project, runs one `gcp.loop.Studio` method and prints a short
summary, or JSON with ``--json``. Errors the engine raises on purpose (`GCPError`) print
one line ``error: ...`` to stderr and exit with status 1; usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gcp.exceptions import GCPError

logger = logging.getLogger(__name__)


class TqdmProgress:
    """An ``on_progress(done, total, info)`` callback that drives one tqdm bar."""

    def __init__(self, description: str, *, disable: bool = False) -> None:
        from tqdm import tqdm

        self._bar = tqdm(desc=description, total=0, disable=disable, file=sys.stderr,
                         leave=False)

    def __call__(self, done: int, total: int, info: str) -> None:
        if self._bar.total != total:
            self._bar.reset(total=total)
        self._bar.n = done
        self._bar.set_postfix_str(info[:60], refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _progress(args: argparse.Namespace, description: str) -> TqdmProgress:
    return TqdmProgress(description, disable=args.json or args.quiet)


def _clean(value: Any) -> Any:
    """Make numpy scalars, NaN and frames JSON-friendly."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _clean(value.to_dict(orient="records"))
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(_clean(data), indent=2, default=str))
    else:
        print(text)


def _studio(args: argparse.Namespace) -> Any:
    from gcp.loop import Studio

    return Studio.open(args.project)


# ---------------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    from gcp.loop import Studio

    bar = _progress(args, "import")
    studio = Studio.create(args.project, graph=args.graph, seed=args.seed)
    try:
        report = studio.import_data(args.data, text_column=args.text_column,
                                    id_column=args.id_column, label_column=args.label_column,
                                    test_size=args.test_size, seed=args.seed, on_progress=bar)
    except GCPError:
        studio.close()
        import shutil

        shutil.rmtree(args.project, ignore_errors=True)
        raise
    finally:
        bar.close()
    data = {"project": str(args.project), "pool": report.n_pool, "test": report.n_test,
            "imported": report.n_imported, "graph": studio.graph.content_hash}
    _emit(args, data, f"created {args.project}: {report.n_imported} texts "
                      f"({report.n_pool} pool, {report.n_test} test)")
    return 0


def cmd_teacher(args: argparse.Namespace) -> int:
    studio = _studio(args)
    if args.kind == "recorded":
        config: dict[str, Any] = {"kind": "recorded", "path": args.file}
    elif args.kind == "rules":
        config = {"kind": "rules"}
    else:
        config = {"kind": "openai", "model": args.model}
        if args.base_url:
            config["base_url"] = args.base_url
        if args.temperature is not None:
            config["temperature"] = args.temperature
    studio.set_teacher(config)
    if args.budget_money is not None or args.budget_labels is not None:
        studio.set_budget(labels=args.budget_labels, money=args.budget_money)
    _emit(args, {"teacher": studio.teacher_config(), "budget": studio.budget()},
          f"teacher set to {studio.teacher.name}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from gcp.graph import ConceptGraph

    graph = ConceptGraph.load(args.graph)
    data = {"valid": True, "nodes": len(graph), "edges": len(graph.edges),
            "output": graph.output, "labels": list(graph.labels), "hash": graph.content_hash}
    _emit(args, data, f"valid: {len(graph)} nodes, {len(graph.edges)} edges, output "
                      f"{graph.output!r} with labels {list(graph.labels)}")
    return 0


def cmd_acquire(args: argparse.Namespace) -> int:
    studio = _studio(args)
    bar = _progress(args, "embed")
    try:
        number = studio.propose_round(args.strategy, args.batch_size, seed=args.seed,
                                      on_progress=bar)
    finally:
        bar.close()
    frame = studio.candidates(number)
    rows = frame[["rank", "text_id", "score", "text"]]
    text = f"round {number}: {len(frame)} candidates by {args.strategy!r}\n" + rows.head(
        args.show).to_string(index=False, max_colwidth=70)
    _emit(args, {"round": number, "candidates": frame}, text)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    if not args.all and not args.ids and not args.reject:
        raise GCPError("say what to approve: --all or --ids ID ...")
    studio = _studio(args)
    number = args.round or studio._open_round_number()
    if args.reject:
        studio.decide(number, args.reject, approved=False, user=args.user)
    if args.all or args.ids:
        studio.decide(number, None if args.all else args.ids, approved=True, user=args.user)
    counts = studio.project.candidates(number)["decision"].value_counts().to_dict()
    _emit(args, {"round": number, "decisions": counts}, f"round {number}: {counts}")
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    studio = _studio(args)
    bar = _progress(args, "annotate")
    try:
        if args.evaluation_split:
            summary = studio.annotate_evaluation_split(paid=True, on_progress=bar)
            summary.setdefault("failed", 0)
            summary.setdefault("cost", 0.0)
        else:
            summary = studio.annotate(args.round, on_progress=bar)
    finally:
        bar.close()
    _emit(args, summary, f"{summary['answered']} answered, {summary['failed']} failed, "
                         f"{summary['skipped']} skipped, cost ${summary['cost']:.4f}")
    return 0 if not summary["failed"] else 1


def cmd_train(args: argparse.Namespace) -> int:
    studio = _studio(args)
    bar = _progress(args, "train")
    try:
        result = studio.train(targeted=args.targeted, top_k=args.top_k, seed=args.seed,
                              on_progress=bar)
    finally:
        bar.close()
    metrics = result["metrics"]
    _emit(args, result, f"run {result['run']} ({result['kind']}): trained "
                        f"{len(result['trained_nodes'])} modules; accuracy "
                        f"{metrics.get('accuracy')}, teacher agreement "
                        f"{metrics.get('teacher_agreement')}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    studio = _studio(args)
    bar = _progress(args, "rounds")
    try:
        summaries = studio.run(args.rounds, args.batch_size, args.strategy,
                               auto_approve=args.auto_approve, seed=args.seed,
                               targeted=args.targeted, top_k=args.top_k, on_progress=bar)
    finally:
        bar.close()
    rows = [s.to_dict() for s in summaries]
    lines = [f"round {s.number} ({s.strategy}): {s.labels} labels, ${s.cost:.4f}, accuracy "
             f"{s.accuracy}, teacher agreement {s.teacher_agreement}"
             + (f" - stopped: {s.stopped}" if s.stopped else "") for s in summaries]
    if not args.auto_approve and studio.project.open_round():
        lines.append("a round waits for approval: `gcp approve PROJECT --all`, then run again")
    _emit(args, {"rounds": rows, "evaluation": studio.evaluate()}, "\n".join(lines) or
          "nothing to do")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    metrics = _studio(args).evaluate()
    _emit(args, metrics, "\n".join(f"{k}: {v}" for k, v in metrics.items()))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = _studio(args).status()
    _emit(args, status, "\n".join(f"{k}: {v}" for k, v in status.items()))
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    report = _studio(args).diagnose()
    uncertainty = report["uncertainty"]
    data = {
        "target": report["target"], "n_texts": report["n_texts"],
        "n_errors": report["n_errors"],
        "node_accuracy": report["node_accuracy"],
        "uncertainty": {"mean": uncertainty.mean().to_dict(),
                        "texts": int(len(uncertainty))},
        "attribution": report["attribution"],
    }
    attribution = report["attribution"]
    lines = [f"{report['n_errors']} errors on {report['n_texts']} texts "
             f"(against {report['target']} labels)"]
    for _, row in attribution.head(5).iterrows():
        lines.append(f"correcting {row['node']!r} fixes {row['share_fixed']:.0%} of errors")
    _emit(args, data, "\n".join(lines))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = _studio(args).export(args.out)
    _emit(args, {"bundle": str(out)}, f"exported the student to {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from gcp.bundle import predict
    from gcp.data_import import read_table

    table = read_table(args.input, text_column=args.text_column, id_column=args.id_column)
    bar = _progress(args, "encode")
    try:
        frame = predict(args.bundle, list(table["text"]),
                        ids=list(table["id"]) if args.id_column else None,
                        fallback_threshold=args.fallback_threshold, on_progress=bar)
    finally:
        bar.close()
    frame.to_csv(args.output, index=False)
    counts = frame["answered_by"].value_counts().to_dict()
    by = ", ".join(f"{n} by the {who}" for who, n in counts.items())
    _emit(args, {"output": str(args.output), "rows": len(frame), "answered_by": counts},
          f"wrote {len(frame)} predictions to {args.output} ({by})")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    studio = _studio(args)
    studio.cancel_round(args.round)
    _emit(args, {"cancelled": True}, "round cancelled")
    return 0


# ---------------------------------------------------------------------- parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    from gcp.acquisition import STRATEGIES

    parser = argparse.ArgumentParser(prog="gcp", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    strategies = list(STRATEGIES)

    def command(name: str, handler: Callable, text: str, project: bool = True):
        p = sub.add_parser(name, help=text, description=text)
        if project:
            p.add_argument("project", type=Path, metavar="PROJECT", help="project folder")
        _add_common(p)
        p.set_defaults(handler=handler)
        return p

    p = command("init", cmd_init, "create a project from a data file and a concept graph")
    p.add_argument("--data", required=True, type=Path, help="CSV, TSV, JSONL or Parquet file")
    p.add_argument("--text-column", required=True, help="column with the texts")
    p.add_argument("--id-column", help="column with unique text ids (default: row numbers)")
    p.add_argument("--label-column", help="column with gold labels, for evaluation")
    p.add_argument("--graph", required=True, type=Path, help="concept graph JSON file")
    p.add_argument("--test-size", type=float, default=0.2,
                   help="share of texts held out for evaluation (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and training")

    p = command("teacher", cmd_teacher, "choose the teacher that annotates texts")
    p.add_argument("kind", choices=["recorded", "openai", "rules"])
    p.add_argument("--file", type=Path, help="recorded answers (CSV or JSONL), for 'recorded'")
    p.add_argument("--model", help="model name, for 'openai'")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--temperature", type=float, help="sampling temperature (default 0)")
    p.add_argument("--budget-money", type=float, help="stop sending at this many USD")
    p.add_argument("--budget-labels", type=int, help="stop acquiring at this many texts")

    graph = sub.add_parser("graph", help="check concept graph files")
    graph_sub = graph.add_subparsers(dest="graph_command", required=True, metavar="ACTION")
    p = graph_sub.add_parser("validate", help="exit 0 if the graph is valid, else 1 and why")
    p.add_argument("graph", type=Path, metavar="GRAPH.json")
    _add_common(p)
    p.set_defaults(handler=cmd_graph)

    p = command("acquire", cmd_acquire, "propose a pending round of candidates")
    p.add_argument("--strategy", required=True, choices=strategies)
    p.add_argument("--batch-size", required=True, type=int, help="texts to propose")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", type=int, default=10, help="candidates to print (default 10)")

    p = command("approve", cmd_approve, "approve or reject candidates of the open round")
    p.add_argument("--all", action="store_true", help="approve every candidate")
    p.add_argument("--ids", nargs="+", metavar="ID", help="approve these text ids")
    p.add_argument("--reject", nargs="+", metavar="ID", help="reject these text ids")
    p.add_argument("--round", type=int, help="round number (default: the open round)")
    p.add_argument("--user", default=os.environ.get("USER", "cli"), help="who decides")

    p = command("annotate", cmd_annotate, "send the approved texts to the teacher")
    p.add_argument("--round", type=int, help="round number (default: the open round)")
    p.add_argument("--evaluation-split", action="store_true",
                   help="annotate the evaluation texts instead, to measure teacher agreement "
                        "(an LLM teacher charges for them)")

    p = command("train", cmd_train, "train the student, or retrain the top-k modules")
    p.add_argument("--targeted", action="store_true", help="retrain only the top-k modules")
    p.add_argument("--top-k", type=int, default=2, help="modules to retrain (default 2)")
    p.add_argument("--seed", type=int, default=None)

    p = command("run", cmd_run, "run rounds of propose, approve, annotate, train, evaluate")
    p.add_argument("--rounds", type=int, required=True, help="acquisition rounds after the seed")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--strategy", required=True, choices=strategies)
    p.add_argument("--auto-approve", action="store_true",
                   help="approve every candidate without asking")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targeted", action="store_true", help="targeted retraining after the seed")
    p.add_argument("--top-k", type=int, default=2)

    command("evaluate", cmd_evaluate, "accuracy, teacher agreement, labels and cost")
    command("status", cmd_status, "overview of the project")
    command("diagnose", cmd_diagnose, "per-node accuracy, uncertainty and error attribution")

    p = command("export", cmd_export, "write the student bundle for `gcp predict`")
    p.add_argument("--out", required=True, type=Path, help="output folder")

    p = command("cancel", cmd_cancel, "cancel the open round")
    p.add_argument("--round", type=int)

    p = command("predict", cmd_predict, "predict labels and concepts with an exported bundle",
                project=False)
    p.add_argument("bundle", type=Path, metavar="DIR", help="folder written by `gcp export`")
    p.add_argument("--input", required=True, type=Path, help="CSV, TSV, JSONL or Parquet file")
    p.add_argument("--text-column", required=True)
    p.add_argument("--id-column")
    p.add_argument("--output", required=True, type=Path, help="CSV file to write")
    p.add_argument("--fallback-threshold", type=float, metavar="P",
                   help="send rows whose probability is below P to the teacher")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except GCPError as err:
        # The first line is the reason; a data import error adds one line per problem.
        lines = str(err).splitlines() or [type(err).__name__]
        print(f"error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(f"  {line.strip()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; committed work is kept, run the command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
