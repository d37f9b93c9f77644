"""Login: streamlit-authenticator's form over Ledger's accounts (see app/auth.py)."""

from app import auth

auth.login_view()
