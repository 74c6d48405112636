"""Campaigns: many outbound calls from one list, paced, in calling hours, retried by policy.

``spec`` validates a campaign (every row and column, nothing dialed from an invalid one);
``store`` keeps its state durably (``sqlite_store`` by default, ``redis_store`` with
``REDIS_URL``, shared by every instance); ``runner`` claims rows atomically and dials them
through the outbound service, so no number is ever dialed twice, across restarts too.
"""
