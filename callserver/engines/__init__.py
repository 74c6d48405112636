"""Engines: the OpenAI voice APIs a call can run on (``realtime``, ``live``), behind one seam.

See ``base.py`` for the interfaces and ``registry.py`` for the list of engines.
"""
