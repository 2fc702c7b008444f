"""GCP Studio engine: distill an LLM text classifier into a graph of concept predictors.

The teacher (an LLM, a recorded file of its answers, or rules) answers concept questions
about texts. The student mirrors the teacher's concept graph: a frozen text encoder feeds
one small predictor per concept node, each node reads its parents, and the output node
predicts the task label. Graph-aware active learning chooses which texts to pay the teacher
for, and targeted retraining updates only the concept modules that cost the most.

Modules: `graph` (concept DAG), `encoder` (frozen text encoder and embedding cache),
`student` and `training` (concept predictors), `diagnostics`, `teachers` (LLM, recorded
and rule teachers), `acquisition` (strategies), `store` and `data_import` (project
folder), `loop` (rounds) and `cli`. Nothing here imports Streamlit.
"""

__version__ = "0.1.0"
