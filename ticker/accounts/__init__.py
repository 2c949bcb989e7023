"""Accounts (issue 23): sign-up, sign-in, sign-out and password change with Django's auth, and the watchlist
stored on the account (``/api/watchlist/``). A side of its own (tests/test_layout.py): it may import what the
edge may."""
