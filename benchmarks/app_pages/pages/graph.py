"""Benchmark page: a generated 100-node concept graph drawn with `gcp.visual.graph_html`."""

import streamlit as st

from benchmarks.app_pages.generated import big_graph
from gcp.visual import graph_html

graph = big_graph()
accuracy = {name: (i % 10) / 10 for i, name in enumerate(graph.names)}
st.iframe(graph_html(graph, metrics={"accuracy": accuracy}, height=700), height=720)
