"""The one error type a webhook request turns into: an HTTP status plus a message for the body."""

from __future__ import annotations


class WebhookError(Exception):
    """A request we refuse. ``message`` goes to the client as ``{"error": message}``, so it
    must never contain a secret or a signature."""

    def __init__(self, status: int, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        """Short machine label for metrics (e.g. ``bad_signature``, ``stale``)."""
