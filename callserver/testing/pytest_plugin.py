"""pytest plugin: every ``*.cassette.jsonl`` under a ``replays/`` directory is a test.

Installed with callserver (``pytest11`` entry point), so a project only drops cassettes into
``tests/replays/`` and runs pytest. Each cassette replays against the project's config with
tools answered from the recording (see :mod:`callserver.testing.replay`); a failure shows the
first divergence. Settings (``pyproject.toml`` ``[tool.pytest.ini_options]`` or pytest.ini):

* ``callserver_replay_config``: config to replay against (default ``config``,
  relative to the rootdir);
* ``callserver_replay_execute``: tools to run for real instead (space separated);
* ``callserver_replay_timeout``: seconds to wait for each expected client event (default 5).

All collected cassettes of a run replay together through one fake and one callserver (the
first replay test runs the batch, the others read their result), which keeps 100 cassettes
to a few seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callserver.testing.replay import SUFFIX, ReplayResult, replay_paths

__all__ = ["CassetteFile", "CassetteItem", "ReplayFailed"]

_RESULTS = pytest.StashKey[dict[Path, ReplayResult]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "callserver_replay_config",
        "config that cassettes in replays/ directories replay against",
        default="config",
    )
    parser.addini(
        "callserver_replay_execute",
        "tools that run for real during replays (others answer from the recording)",
        type="args",
        default=[],
    )
    parser.addini(
        "callserver_replay_timeout", "seconds to wait for each expected client event", default="5"
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(SUFFIX) and "replays" in file_path.parent.parts:
        return CassetteFile.from_parent(parent, path=file_path)
    return None


class ReplayFailed(Exception):
    """A cassette did not replay the way it was recorded."""

    def __init__(self, result: ReplayResult) -> None:
        super().__init__(result.report())
        self.result = result


class CassetteFile(pytest.File):
    """One cassette file: one test."""

    def collect(self) -> Iterator[pytest.Item]:
        yield CassetteItem.from_parent(self, name=self.path.name[: -len(SUFFIX)])


class CassetteItem(pytest.Item):
    """Replays its cassette; the batch of all collected cassettes runs on the first one."""

    def runtest(self) -> None:
        results = self.config.stash.setdefault(_RESULTS, {})
        if self.path not in results:
            pending = [
                item.path
                for item in self.session.items
                if isinstance(item, CassetteItem) and item.path not in results
            ]
            results.update(_replay_batch(self.config, pending or [self.path]))
        result = results[self.path]
        if not result.passed:
            raise ReplayFailed(result)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | Any:
        if isinstance(excinfo.value, ReplayFailed):
            result = excinfo.value.result
            extra = [str(d) for d in sorted(result.divergences, key=lambda d: d.t)[1:4]]
            return "\n".join([result.report(), *(f"  then: {e}" for e in extra)])
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"replay {self.name}"


def _replay_batch(config: pytest.Config, paths: list[Path]) -> dict[Path, ReplayResult]:
    graph_config = Path(str(config.getini("callserver_replay_config")))
    if not graph_config.is_absolute():
        graph_config = config.rootpath / graph_config
    execute = list(config.getini("callserver_replay_execute"))
    timeout = float(config.getini("callserver_replay_timeout"))
    results = asyncio.run(replay_paths(paths, graph_config, execute=execute, timeout=timeout))
    return {path: result for path, result in zip(paths, results, strict=True)}
