"""Acquisition page: propose a round, approve candidates, send them to the teacher."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from gcp import visual
from gcp.acquisition import STRATEGIES, seed_strategies
from gcp.exceptions import GCPError
from pages.shared import common
from pages.shared import engine


def render() -> None:
    st.title("Acquisition")
    common.job_status()
    studio = common.open_or_stop()
    status = studio.status()
    if not status["pool"]:
        st.info("The pool is empty: import texts on the Project page first.")
        return
    st.caption(f"{status['pool']:,} pool texts, {status['labels']:,} labelled, "
               f"{common.format_money(status['cost'])} spent. Teacher: {status.get('teacher') or 'not set'}.")
    rounds = studio.project.rounds()
    open_round = studio.project.open_round()
    if open_round is None:
        _propose_form(studio)
    elif open_round["status"] in ("pending", "approved"):
        _review(studio, int(open_round["number"]), open_round["status"])
    else:
        _finish(studio, int(open_round["number"]), open_round["status"])
    _answers(studio, rounds)


def _finish(studio, number: int, status: str) -> None:
    locked = common.job_running()
    if status == "annotated":
        st.info(f"Round {number} is annotated. Next: train the student on the Training page; "
                "training closes the round and adds it to the learning curve.")
    else:
        st.info(f"Round {number} is trained but still open.")
    if st.button(f"Close round {number} now", key="acquisition_close", disabled=locked,
                 help="Evaluate the current student and close the round without training"):
        try:
            with st.spinner("Evaluating..."):
                engine.finish_round(studio, number)
        except GCPError as err:
            st.error(str(err))
        else:
            st.rerun()


def _propose_form(studio) -> None:
    st.subheader("Propose a round")
    names = list(STRATEGIES)
    trained = studio.student is not None
    default = "gcp" if trained else "random"
    with st.form("acquisition_propose_form"):
        left, middle, right = st.columns([2, 1, 1])
        strategy = left.selectbox("Strategy", names, index=names.index(default),
                                  format_func=lambda n: f"{n}: {STRATEGIES[n]}",
                                  key="acquisition_strategy")
        batch_size = middle.number_input("Batch size", min_value=1, max_value=1000, value=20,
                                         key="acquisition_batch_size")
        seed = right.number_input("Seed", min_value=0, value=0, key="acquisition_seed")
        submitted = st.form_submit_button("Propose a round", type="primary",
                                          disabled=common.job_running(), key="acquisition_propose")
    if trained:
        st.caption("Proposing encodes the pool once (cached afterwards) and scores every "
                   "text with the current student.")
    else:
        st.caption("No student yet: the first round needs a strategy that works without one ("
                   + ", ".join(sorted(seed_strategies)) + ").")
    if submitted:
        def work(studio, on_progress):
            return studio.propose_round(strategy, int(batch_size), seed=int(seed),
                                        on_progress=on_progress)

        try:
            common.start_job("propose", f"Proposing a round ({strategy}, {batch_size} texts)",
                             work, describe=lambda number: f"round {number} is ready for review")
        except GCPError as err:
            st.error(str(err))
            return
        st.rerun()


def _candidates_table(studio, number: int) -> pd.DataFrame:
    graph = studio.graph
    candidates = studio.candidates(number)
    table = pd.DataFrame({
        "select": False,
        "rank": candidates["rank"].astype(int),
        "text": candidates["text"],
        "score": candidates["score"].astype(float),
        "contributions": [visual.node_contributions(b, graph.names) for b in candidates["breakdown"]],
        "details": [visual.breakdown_summary(b) for b in candidates["breakdown"]],
        "decision": candidates["decision"],
        "text_id": candidates["text_id"],
    })
    top = []
    for parts in table["contributions"]:
        top.append(graph.names[max(range(len(parts)), key=parts.__getitem__)] if any(parts) else "")
    table.insert(5, "top concept", top)
    return table


def _review(studio, number: int, status: str) -> None:
    st.subheader(f"Round {number}: review the candidates")
    if status == "approved":
        st.caption("Decisions are final once the teacher has been asked; the remaining "
                   "approved texts can be sent again.")
    table = _candidates_table(studio, number)
    if table.empty:
        st.info("This round has no candidates.")
        return

    counts = table["decision"].value_counts()
    try:
        estimate = studio.estimate_cost(number)
    except GCPError as err:
        estimate = None
        st.warning(f"No cost estimate: {err}")
    cost = "unknown" if estimate is None else common.format_money(estimate["cost"])
    st.caption(
        f"{len(table)} candidates: {counts.get('approved', 0)} approved, "
        f"{counts.get('rejected', 0)} rejected, {counts.get('pending', 0)} pending. "
        f"Estimated teacher cost of the approved (or else all) texts: {cost}."
    )

    locked = common.job_running() or status != "pending"
    chosen = _candidate_editor(studio, table, number, locked)
    _decision_buttons(studio, number, chosen, locked)

    n_approved = len(studio.project.approved_unlabelled_ids(number))
    common.run_job_button(
        f"Send {n_approved} approved to the teacher (estimated {cost})",
        key="acquisition_annotate", kind="annotate",
        job_label=f"Asking the teacher about round {number}",
        work=lambda studio, on_progress: studio.annotate(number, on_progress=on_progress),
        describe=_describe_annotation, disabled=n_approved == 0,
    )


def _candidate_editor(studio, table: pd.DataFrame, number: int, locked: bool) -> list[str]:
    """Show the candidates with a tick column; return the ids of the ticked rows."""
    upper = max((max(parts) for parts in table["contributions"] if parts), default=0.0) or 1.0
    edited = st.data_editor(
        table, key=f"acquisition_editor_{number}", hide_index=True, width="stretch",
        disabled=[c for c in table.columns if c != "select"] if not locked else True,
        column_order=["select", "rank", "text", "score", "contributions", "top concept",
                      "details", "decision"],
        column_config={
            "select": st.column_config.CheckboxColumn(
                "select", help="Tick rows, then approve or reject them"),
            "text": st.column_config.TextColumn("text", width="large"),
            "score": st.column_config.NumberColumn("score", format="%.3f"),
            "contributions": st.column_config.BarChartColumn(
                "per-node contributions", y_min=0.0, y_max=float(upper),
                help="One bar per node, in graph order: " + ", ".join(studio.graph.names)),
            "details": st.column_config.TextColumn("other terms"),
        },
    )
    return edited.loc[edited["select"], "text_id"].tolist()


def _decision_buttons(studio, number: int, chosen: list[str], locked: bool) -> None:
    cols = st.columns(5)
    actions = [
        (cols[0], f"Approve ticked ({len(chosen)})", "acquisition_approve_selected", chosen, True),
        (cols[1], f"Reject ticked ({len(chosen)})", "acquisition_reject_selected", chosen, False),
        (cols[2], "Approve all", "acquisition_approve_all", None, True),
        (cols[3], "Reject all", "acquisition_reject_all", None, False),
    ]
    for col, label, key, ids, approved in actions:
        if col.button(label, key=key, disabled=locked or (ids is not None and not ids)):
            try:
                studio.decide(number, ids, approved=approved)
            except GCPError as err:
                st.error(str(err))
            else:
                st.rerun()
    if cols[4].button("Cancel round", key="acquisition_cancel", disabled=common.job_running()):
        try:
            studio.cancel_round(number)
        except GCPError as err:
            st.error(str(err))
        else:
            st.rerun()


def _describe_annotation(result: dict) -> str:
    return (f"{result['answered']} answered, {result['failed']} failed, "
            f"{result['skipped']} skipped, cost {common.format_money(result['cost'])}")


def _answers(studio, rounds: pd.DataFrame) -> None:
    annotated = rounds[rounds["status"].isin(["annotated", "trained", "done"])]
    if annotated.empty:
        return
    st.subheader("Teacher answers")
    numbers = annotated["number"].astype(int).tolist()
    number = st.selectbox("Round", numbers, index=len(numbers) - 1, key="acquisition_answers_round")
    answers = studio.project.annotations(round=number)
    if answers.empty:
        st.info(f"Round {number} has no answers.")
        return
    wide = answers.pivot_table(index="text_id", columns="node", values="value", aggfunc="last")
    texts = studio.project.texts().set_index("id")["text"]
    wide.insert(0, "text", texts.reindex(wide.index))
    columns = ["text"] + [n for n in studio.graph.names if n in wide.columns]
    st.dataframe(wide[columns], width="stretch")
    st.caption(f"{len(wide)} texts, cost {common.format_money(float(answers['cost'].sum()))}. "
               "Next: train the student on the Training page.")


render()
