"""``load_config``: read YAML files, validate them, resolve them into a ``Config``.

Layout: ``PATH`` is one graph file, or a directory where every ``*.yaml`` is one graph and
``routes.yaml`` (optional with a single graph) is the routing table. Every problem in every
file is collected and raised together as one ``ConfigError``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from callserver.graph.errors import ConfigError, ConfigIssue, no_such
from callserver.graph.fields import NAME_PATTERN
from callserver.graph.graph_models import GraphFile
from callserver.graph.resolve_graph import GraphResolver
from callserver.graph.route_models import DefaultReject, RoutesFile
from callserver.graph.routes import Matcher, Route, RouteTable
from callserver.graph.spec import Config, GraphSpec
from callserver.graph.validation import pydantic_issues
from callserver.graph.yamlsrc import (
    LineDict,
    format_path,
    locate,
    parse_yaml,
    syntax_error_line,
)

ROUTES_FILES = ("routes.yaml", "routes.yml")


def _files(root: Path) -> list[Path]:
    if root.is_dir():
        return sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
    return [root]


class _Loader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.issues: list[ConfigIssue] = []
        self.warnings: list[str] = []
        self.hashed: list[tuple[str, bytes]] = []
        self.unparsed: dict[Path, bytes] = {}
        """Files that are not YAML text (already reported), by path: their raw bytes."""

    def issue(self, shown: str, data: Any, path: list[str | int], message: str) -> None:
        line = locate(data, path)[0] if data is not None else 1
        self.issues.append(ConfigIssue(shown, line, format_path(path), message))

    def parse(self, file: Path, shown: str) -> Any:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            self.issues.append(ConfigIssue(shown, 1, "(file)", f"cannot read: {exc.strerror}"))
            return None
        self.hashed.append((file.name, raw))
        try:
            parsed = parse_yaml(raw.decode("utf-8"))
        except UnicodeDecodeError:
            self.issues.append(ConfigIssue(shown, 1, "(file)", "not UTF-8 text"))
            self.unparsed[file] = raw
            return None
        except yaml.YAMLError as exc:
            line, problem = syntax_error_line(exc)
            self.issues.append(ConfigIssue(shown, line, "(yaml)", f"invalid YAML: {problem}"))
            self.unparsed[file] = raw
            return None
        for dup in parsed.duplicates:
            self.issues.append(
                ConfigIssue(
                    shown,
                    dup.line,
                    format_path(dup.path),
                    f"duplicate key (first at line {dup.first_line})",
                )
            )
        if not isinstance(parsed.data, LineDict):
            self.issues.append(ConfigIssue(shown, 1, "(top level)", "expected a mapping of keys"))
            return None
        return parsed.data

    def graph(self, file: Path, shown: str, data: Any) -> tuple[str, GraphSpec | None]:
        raw_name = data.get("name")
        name = raw_name if isinstance(raw_name, str) else file.stem
        if raw_name is None and not re.match(NAME_PATTERN, name):
            self.issue(
                shown, data, [], f"file name {file.stem!r} is not a valid graph name; set 'name'"
            )
        try:
            model = GraphFile.model_validate(data)
            bad: set[tuple[str, str]] = set()
            pruned_any = False
        except ValidationError as exc:
            self.issues.extend(pydantic_issues(shown, data, exc))
            pruned = _prune(data, exc)
            if pruned is None:
                return name, None
            model, bad = pruned
            pruned_any = True
        resolver = GraphResolver(file, shown, data, self.env, known_bad=bad)
        spec = resolver.resolve(name, model)
        if pruned_any:
            spec = None
        self.issues.extend(resolver.issues)
        self.warnings.extend(resolver.warnings)
        for extra in resolver.extra_files:
            self.hashed.append((os.path.relpath(extra, file.parent), extra.read_bytes()))
        return name, spec

    def routes(self, shown: str, data: Any, names: Mapping[str, str]) -> RouteTable | None:
        try:
            model = RoutesFile.model_validate(data)
        except ValidationError as exc:
            self.issues.extend(pydantic_issues(shown, data, exc))
            return None
        routes: list[Route] = []
        ok = True
        seen: dict[str, int] = {}
        for i, spec in enumerate(model.routes):
            route_name = spec.name or f"routes[{i}]"
            if route_name in seen:
                self.issue(
                    shown, data, ["routes", i, "name"], f"route name {route_name!r} is used twice"
                )
                ok = False
            seen[route_name] = i
            if spec.graph is not None and spec.graph not in names:
                self.issue(shown, data, ["routes", i, "graph"], no_such("graph", spec.graph, names))
                ok = False
            routes.append(
                Route(
                    route_name,
                    Matcher.compile(spec.match),
                    spec.graph,
                    spec.reject,
                    dict(spec.sip_headers),
                )
            )
        default_graph = model.default if isinstance(model.default, str) else None
        if default_graph is not None and default_graph not in names:
            self.issue(shown, data, ["default"], no_such("graph", default_graph, names))
            ok = False
        default_reject = model.default.reject if isinstance(model.default, DefaultReject) else None
        return RouteTable(tuple(routes), default_graph, default_reject) if ok else None


_NAME_LINE = re.compile(rb"""^name:[ \t]*["']?([A-Za-z0-9_\-]+)["']?[ \t]*(?:#.*)?$""", re.M)


def _declared_name(file: Path, raw: bytes) -> str:
    """The graph name of a file that is not valid YAML: its top-level ``name:`` line if one
    reads plainly, else the file name (as for a file without ``name:``)."""
    match = _NAME_LINE.search(raw)
    return match.group(1).decode() if match else file.stem


_PRUNABLE = ("tools", "guardrails", "agents")


def _plain(node: Any) -> Any:
    """A mutable deep copy of parsed YAML, for pruning."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _existing(work: Any, loc: tuple[Any, ...]) -> list[Any]:
    """The longest prefix of ``loc`` (skipping union tags) that exists, cut at lists so that
    list indices in later messages still match the source."""
    path: list[Any] = []
    node = work
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
            if isinstance(node, list):
                break
        elif isinstance(node, dict):
            continue
        else:
            break
    return path


def _prune(data: LineDict, exc: ValidationError) -> tuple[GraphFile, set[tuple[str, str]]] | None:
    """Drop the invalid parts of a graph file so cross-reference checks can still run.

    The deepest existing key of every error is removed (for a missing key: the mapping that
    lacks it), until the rest validates. Tools, guardrails and agents removed as a whole are
    returned, so that references to them are not reported a second time.
    """
    bad: set[tuple[str, str]] = set()
    work = _plain(data)
    for _ in range(6):
        for err in exc.errors(include_url=False):
            path = _existing(work, tuple(err["loc"]))
            if not path:
                return None
            if len(path) == 2 and path[0] in _PRUNABLE:
                bad.add((str(path[0]), str(path[1])))
            parent = work
            for part in path[:-1]:
                parent = parent[part]
            parent.pop(path[-1], None)
        try:
            return GraphFile.model_validate(work), bad
        except ValidationError as again:
            exc = again
    return None


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load and validate a config file or directory; raises ``ConfigError`` with every issue.

    ``env`` (default ``os.environ``) supplies ``${NAME}`` references of HTTP tools.
    """
    root = Path(path)
    loader = _Loader(os.environ if env is None else env)
    if not root.exists():
        raise ConfigError([ConfigIssue(str(root), 1, "(file)", "no such file or directory")])
    files = _files(root)
    if not files:
        raise ConfigError([ConfigIssue(str(root), 1, "(dir)", "no *.yaml files in this directory")])
    graphs: dict[str, GraphSpec] = {}
    names: dict[str, str] = {}
    routes_src: tuple[str, Any] | None = None
    for file in files:
        shown = str(root / file.name) if root.is_dir() else str(root)
        data = loader.parse(file, shown)
        if data is None:
            if file.name not in ROUTES_FILES:
                # Already reported; still a graph routes may name, so no false "no graph
                # named ..." in routes.yaml.
                names.setdefault(_declared_name(file, loader.unparsed.get(file, b"")), shown)
            continue
        if file.name in ROUTES_FILES:
            routes_src = (shown, data)
            continue
        name, spec = loader.graph(file, shown, data)
        if name in names:
            loader.issue(
                shown,
                data,
                ["name"] if "name" in data else [],
                f"graph {name!r} is also defined in {names[name]}",
            )
        names[name] = shown
        if spec is not None:
            graphs[name] = spec
    table: RouteTable | None = None
    if routes_src is not None:
        table = loader.routes(routes_src[0], routes_src[1], names)
    elif len(names) == 1:
        table = RouteTable((), next(iter(names)), None)
    elif len(names) > 1:
        loader.issues.append(
            ConfigIssue(
                str(root), 1, "(dir)", "several graphs but no routes.yaml to choose between them"
            )
        )
    elif not loader.issues:
        loader.issues.append(ConfigIssue(str(root), 1, "(dir)", "no graph defined"))
    if loader.issues or table is None:
        raise ConfigError(loader.issues)
    digest = hashlib.sha256()
    for name, raw in sorted(loader.hashed):
        digest.update(name.encode() + b"\0" + hashlib.sha256(raw).digest())
    return Config(
        graphs=graphs,
        routes=table,
        config_hash=digest.hexdigest(),
        files=tuple(sorted(n for n, _ in loader.hashed)),
        warnings=tuple(loader.warnings),
        sources=tuple(sorted(loader.hashed)),
        root_file=None if root.is_dir() else root.name,
    )
