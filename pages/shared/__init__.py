"""Helpers of the app pages. They live in this sub-package, so Streamlit's scan of the
``pages/`` folder (shown before `st.navigation` runs) does not list them as pages."""
