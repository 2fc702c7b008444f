"""Benchmark page with nothing on it: the baseline for page render times."""

import streamlit as st

st.markdown("benchmark page ready")
