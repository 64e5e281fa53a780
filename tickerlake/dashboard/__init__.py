"""The dashboard lane: a Streamlit app (app.py) over the warehouse, read as the analyst role."""
