"""Outbound calls: dialers (GPT-Live's own, Twilio's) and campaigns.

A request to place a call (``POST /admin/calls``, ``callserver call``, a campaign row) is
validated here (:mod:`request`), checked against the do-not-call list and the outbound
share of the call cap (:mod:`service`), and handed to the call manager with a dialer; from
the dialer's first answer on it is a call like any other. Campaigns (:mod:`campaigns`) pace
many such calls from durable state (SQLite, or Redis with several instances) so that no
number is ever dialed twice.
"""
