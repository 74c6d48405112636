"""Resolving ``module:attribute`` references and ``${ENV}`` references at load time.

Both are resolved when the config loads, so a typo or a missing secret stops the config from
being used instead of failing the first caller who needs that tool.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class RefError(Exception):
    """A reference that cannot be resolved; the message is meant for the operator."""


def import_ref(ref: str) -> Any:
    """Import ``package.module:attr.sub`` and return the attribute."""
    module_name, _, attr_path = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise RefError(f"cannot import {ref!r}: no module named {exc.name!r}") from None
    except Exception as exc:  # an import-time error in the operator's module
        raise RefError(f"cannot import {ref!r}: {type(exc).__name__}: {exc}") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RefError(f"cannot import {ref!r}: {module_name} has no {attr_path!r}") from None
    return obj


@dataclass(slots=True)
class EnvResult:
    """A string with its ``${ENV}`` references filled in."""

    value: str
    missing: list[str] = field(default_factory=list)
    defaulted: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)


def expand_env(text: str, env: Mapping[str, str]) -> EnvResult:
    """Fill ``${NAME}`` (required) and ``${NAME:-default}`` (optional) from ``env``."""
    result = EnvResult(value="")

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        result.refs.append(name)
        if name in env:
            return env[name]
        if default is not None:
            result.defaulted.append(name)
            return default
        result.missing.append(name)
        return ""

    result.value = _ENV_REF.sub(sub, text)
    return result


def literal_part(text: str) -> str:
    """The text of a value outside its ``${...}`` references."""
    return _ENV_REF.sub("", text)
