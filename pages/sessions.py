"""Placeholder until the sessions page lands (its own issue)."""

import streamlit as st

from app.context import current_user

user = current_user()
st.title("Sessions")
