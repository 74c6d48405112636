"""Campaigns: many outbound calls from one list, paced, in calling hours, retried by policy.

``spec`` validates a campaign (every row and column, nothing dialed from an invalid one);
``store`` keeps its state durably (``sqlite_store`` by default, ``redis_store`` with
``REDIS_URL``, shared by every instance); ``runner`` claims rows atomically and dials them
through the outbound service, so no number is ever dialed twice, across restarts too.

The stores share what is not storage: ``attempt`` (how an attempt ends: ``AttemptResult``),
``transitions`` (which states may follow which) and ``records`` (a row as imported, rows
and reports read back). SQLite is ``sqlite_store`` on ``sqlite_db``, ``sqlite_campaigns``,
``sqlite_claims`` and ``sqlite_attempts``; Redis is ``redis_store`` on ``redis_scripts``,
``redis_keys`` and ``redis_campaigns``. Imports point one way: the stores' modules import
the shared ones, which import ``store`` and ``spec`` only.
"""
