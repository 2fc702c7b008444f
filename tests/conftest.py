"""Shared fixtures: the in-repo demo graph, its recorded annotations and their embeddings."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gcp.graph import ConceptGraph

DEMO = Path(__file__).resolve().parent.parent / "assets" / "demo"


@pytest.fixture(scope="session")
def demo_graph() -> ConceptGraph:
    """The 14-node movie-review concept graph."""
    return ConceptGraph.load(DEMO / "graph.json")


@pytest.fixture(scope="session")
def demo_frame() -> pd.DataFrame:
    """The 2,400 recorded annotations: id, text, gold_label and one column per node."""
    return pd.read_csv(DEMO / "annotations.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def demo_embeddings(demo_frame, tmp_path_factory) -> np.ndarray:
    """all-MiniLM-L6-v2 embeddings of every demo text, row i for demo_frame row i.

    Encoding the 2,400 texts takes about 15-30 s on two cores, once per session.
    """
    import torch

    from gcp.encoder import TextEncoder, embed_texts

    torch.set_num_threads(2)
    encoder = TextEncoder(cache_dir=tmp_path_factory.mktemp("demo_embeddings"))
    return embed_texts(demo_frame["text"].tolist(), encoder=encoder)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """A demo project folder with every text embedded; copy it, never change it."""
    import torch

    from gcp.loop import Studio, demo_project

    torch.set_num_threads(2)
    folder = demo_project(tmp_path_factory.mktemp("template") / "demo")
    with Studio.open(folder) as studio:
        studio.embeddings()
    return folder


@pytest.fixture()
def demo_copy(demo_template, tmp_path) -> Path:
    """A fresh copy of the demo project for one test."""
    import shutil

    return Path(shutil.copytree(demo_template, tmp_path / "demo"))
