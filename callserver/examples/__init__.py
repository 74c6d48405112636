"""Example tools and guardrails referenced by the bundled configs in ``config/``."""
