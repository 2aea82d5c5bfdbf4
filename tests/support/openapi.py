"""Walking a live OpenAPI document: its operations, their body fields, concrete paths, filled templates."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_PLACEHOLDER = re.compile(r"^\{(\w+)\}$")


def operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) for every operation of the document."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method.upper() in METHODS:
                yield method.upper(), path, operation


def resolve(document: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        node = document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def body_fields(document: Mapping[str, Any], operation: Mapping[str, Any]) -> set[str]:
    """The top-level properties of an operation's JSON body, in any branch of a union."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    pending, fields = ([content["schema"]] if content else []), set()
    while pending:
        node = resolve(document, pending.pop())
        pending += node.get("oneOf", []) + node.get("anyOf", [])
        fields |= set(node.get("properties", {}))
    return fields


def concrete(path: str, value_of: Callable[[str], str]) -> str:
    """The path with each `{parameter}` replaced by `value_of(parameter)`."""
    return "/".join(value_of(part[1:-1]) if part.startswith("{") else part for part in path.split("/"))


def fill(template: Any, values: Mapping[str, Any]) -> Any:
    """A copy of a JSON-like template with each string that is exactly `{name}` replaced by values[name]."""
    if isinstance(template, str):
        found = _PLACEHOLDER.match(template)
        return values[found.group(1)] if found and found.group(1) in values else template
    if isinstance(template, dict):
        return {key: fill(item, values) for key, item in template.items()}
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    return template
