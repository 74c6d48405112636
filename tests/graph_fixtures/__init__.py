"""Helper modules referenced by the graph tests' YAML (``tests.graph_fixtures.tools:...``)."""
