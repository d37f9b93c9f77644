"""The Streamlit side: entry point (main.py), router (router.py) and helpers shared by pages."""
