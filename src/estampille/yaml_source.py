"""Load YAML files so that validation errors can name the line they come from.

PyYAML's composed node tree keeps a start mark for every key and value; pydantic reports
the location of a bad field as a path of keys and indexes. Walking one with the other gives
a line number, which is what a community manager needs to fix the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError


class YamlSource:
    """The parsed data of one YAML file plus its node tree, for line lookups."""

    def __init__(self, path: Path):
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        try:
            self.node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
        if self.data is None:
            self.data = {}

    def line_of(self, loc: tuple[Any, ...]) -> int:
        """1-based line of the deepest node on `loc` that exists in the file."""
        node = self.node
        line = node.start_mark.line + 1 if node is not None else 1
        for part in loc:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == str(part):
                        child = value_node
                        line = key_node.start_mark.line + 1
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if 0 <= part < len(node.value):
                    child = node.value[part]
                    line = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return line

    def error(self, loc: tuple[Any, ...], message: str) -> ConfigError:
        field = ".".join(str(p) for p in loc) or "(top level)"
        return ConfigError(f"{self.path}, line {self.line_of(loc)}: field '{field}': {message}")

    def validate(self, model: type[BaseModel]) -> Any:
        """Validate the whole file against `model`; the first error names file, field and line."""
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = tuple(first["loc"])
            message = first["msg"]
            if first["type"] != "missing" and "input" in first:
                message += f" (got {first['input']!r})"
            raise self.error(loc, message) from None
