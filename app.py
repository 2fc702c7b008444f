"""GCP Studio web app (placeholder until the pages land)."""

import streamlit as st

st.set_page_config(page_title="GCP Studio", layout="wide")
st.title("GCP Studio")
st.write("Distill an LLM text classifier into a graph of concept predictors.")
