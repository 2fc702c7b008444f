"""Thin adapters from the pages to `gcp.loop.Studio` methods.

Each function takes a `Studio` and calls one engine method, so the pages keep short
names for what they do. None of them imports Streamlit, torch or openai.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from gcp.graph import ConceptGraph
from gcp.training import TrainConfig


def student_predictions(studio: Any, ids: list[str]) -> pd.DataFrame | None:
    return studio.predictions(ids)


def round_text_uncertainty(studio: Any, number: int) -> tuple[pd.DataFrame, pd.Series]:
    return studio.round_text_uncertainty(number)


def propose_graph(studio: Any) -> ConceptGraph:
    return studio.propose_graph()


def finish_round(studio: Any, number: int) -> dict[str, Any]:
    """Close a trained round that an older version left open."""
    return studio._close_round(number)


def train_and_close(studio: Any, *, targeted: bool, top_k: int, epochs: int | None = None,
                    on_progress=None) -> dict[str, Any]:
    """Train (or retrain the top-k modules); training closes the annotated round."""
    config = None
    if epochs is not None:
        config = TrainConfig(epochs=int(epochs), seed=studio.project.get_setting("seed", 0))
    return studio.train(targeted=targeted, top_k=top_k, config=config, on_progress=on_progress)
