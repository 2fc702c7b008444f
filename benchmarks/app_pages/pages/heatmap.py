"""Benchmark page: a 2,000 texts x 50 nodes heatmap from `gcp.visual.uncertainty_heatmap`."""

import streamlit as st

from benchmarks.app_pages.generated import uncertainty_frame
from gcp.visual import uncertainty_heatmap

st.plotly_chart(uncertainty_heatmap(uncertainty_frame(), max_rows=2000), width="stretch")
