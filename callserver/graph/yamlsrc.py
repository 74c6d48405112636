"""YAML parsing that remembers where every key and list item came from.

Operators fix a config by line number, so every value the validator complains about must map
back to a line. PyYAML's SafeLoader throws positions away; this subclass keeps them on the
containers it builds (`LineDict.key_lines`, `LineList.item_lines`). It also refuses duplicate
keys, which the stock loader silently resolves to the last one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
import yaml.scanner
from yaml.nodes import MappingNode, ScalarNode


class LineDict(dict[Any, Any]):
    """A mapping that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]
    value_lines: dict[Any, int]
    """Line where each value's text starts (the line after ``|``/``>`` for block scalars)."""


class LineList(list[Any]):
    """A sequence that knows its own line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]


class YamlInt(int):
    """An int that remembers how it was written.

    YAML reads ``+18005551212`` as the number 18005551212; phone-number fields use ``source``
    to get the ``+`` back instead of making operators quote every number.
    """

    source: str


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    """A key that appeared twice in one mapping; ``path`` is the key's full path."""

    key: str
    line: int
    first_line: int
    path: tuple[str | int, ...] = ()


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that builds LineDict/LineList and records duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[LineDict, DuplicateKey]] = []
        """With the mapping they were found in: its path is only known once all is built."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):
            return super().construct_mapping(node, deep=deep)
        self.flatten_mapping(node)
        result = LineDict()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        result.value_lines = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                key = str(key)
            line = key_node.start_mark.line + 1
            if key in result.key_lines:
                dup = DuplicateKey(str(key), line, result.key_lines[key])
                self.duplicates.append((result, dup))
            result.key_lines[key] = line
            block = isinstance(value_node, ScalarNode) and value_node.style in ("|", ">")
            result.value_lines[key] = value_node.start_mark.line + 1 + (1 if block else 0)
            result[key] = self.construct_object(value_node, deep=deep)
        return result

    def construct_yaml_map(self, node: MappingNode) -> Any:
        yield self.construct_mapping(node, deep=True)

    def construct_yaml_seq(self, node: Any) -> Any:
        result = LineList()
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        yield result
        result.extend(self.construct_object(child, deep=True) for child in node.value)

    def construct_yaml_int(self, node: ScalarNode) -> int:
        value = YamlInt(super().construct_yaml_int(node))
        value.source = str(node.value)
        return value


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_yaml_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_yaml_seq)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _LineLoader.construct_yaml_int)


@dataclass(frozen=True, slots=True)
class ParsedYaml:
    """One YAML document with its duplicate keys."""

    data: Any
    duplicates: list[DuplicateKey]


def parse_yaml(text: str) -> ParsedYaml:
    """Parse one YAML document; raises ``yaml.YAMLError`` (with a mark) on bad syntax."""
    loader = _LineLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    paths = _container_paths(data)
    duplicates = [
        dataclasses.replace(dup, path=(*paths.get(id(mapping), ()), dup.key))
        for mapping, dup in loader.duplicates
    ]
    return ParsedYaml(data, duplicates)


def _container_paths(data: Any) -> dict[int, tuple[str | int, ...]]:
    """id() of every mapping and list in ``data`` -> its key path from the top."""
    paths: dict[int, tuple[str | int, ...]] = {}
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            paths[id(node)] = path
            stack.extend((value, (*path, key)) for key, value in node.items())
        elif isinstance(node, list):
            paths[id(node)] = path
            stack.extend((value, (*path, index)) for index, value in enumerate(node))
    return paths


def syntax_error_line(exc: yaml.YAMLError) -> tuple[int, str]:
    """(1-based line, message) for a YAML syntax error, on the line of the mistake.

    PyYAML's ``problem_mark`` is where it noticed; for scanner errors (a key without its
    colon, an unclosed quote) that is the line *after* the mistake, and ``context_mark``
    points at the token that went wrong. Parser errors keep the problem mark: their context
    is the start of the enclosing block, which may be far above.
    """
    problem = getattr(exc, "problem", None) or str(exc)
    problem_mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    context = getattr(exc, "context", None)
    line = problem_mark.line + 1 if problem_mark else 1
    if isinstance(exc, yaml.scanner.ScannerError) and context_mark is not None:
        mistake = context_mark.line + 1
        if mistake != line:
            return mistake, f"{problem} ({context}; noticed at line {line})"
        return mistake, problem
    return line, problem


def locate(data: Any, loc: Sequence[str | int]) -> tuple[int, list[str | int]]:
    """Find the line for a validation ``loc`` and the part of it that exists in the data.

    Elements of ``loc`` that are not keys of the current mapping (pydantic's union tags such
    as ``'http'`` or ``'function-after[...]'``) are skipped; the walk stops at the first
    element that cannot be followed, and the line of the deepest node reached is returned.
    """
    line = getattr(data, "line", 0) or 1
    path: list[str | int] = []
    node = data
    items = list(loc)
    i = 0
    while i < len(items):
        part = items[i]
        if isinstance(node, LineDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
            path.append(part)
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
            path.append(part)
        elif isinstance(node, LineDict) and i + 1 < len(items) and items[i + 1] in node:
            pass  # a union tag between two real keys
        elif isinstance(node, LineDict) and i == len(items) - 1:
            path.append(part)  # a missing or unknown key: report it at the mapping's line
        i += 1
    return line, path


def format_path(path: Sequence[str | int]) -> str:
    """``['agents', 'billing', 'handoffs', 1]`` -> ``agents.billing.handoffs[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def line_of(data: Any, path: Sequence[str | int]) -> int:
    """The line of a path that is known to exist (or of its deepest existing prefix)."""
    return locate(data, path)[0]
