"""The Streamlit side: entry point (main.py), router (ui.py) and helpers shared by pages."""
