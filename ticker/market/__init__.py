"""The market process: the price model, its schedule and loop, the lease, and the database it writes.

Runs in ``manage.py run_market``. The web processes read what it stored (``selectors``, ``lease.identity``) and
what it publishes (``ticker.wire``), never the loop itself.
"""
