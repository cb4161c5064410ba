"""Load YAML files so that validation errors can name the line they come from.

PyYAML's composed node tree keeps a start mark for every key and value; pydantic reports
the location of a bad field as a path of keys and indexes. Walking one with the other gives
a line number, which is what a community manager needs to fix the file.

Every YAML file a user writes is read through `UniqueKeyLoader` (here, and `load_yaml` for files
without a schema): YAML itself lets a key appear twice and keeps the last one, so a second
`render:` block would silently wipe the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice; both places are kept for the message."""

    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark):
        super().__init__(
            None,
            None,
            f"key {key!r} appears twice, on line {first.line + 1} and line "
            f"{second.line + 1} (YAML would keep only the last one): merge them or remove one",
            second,
        )
        self.key, self.first_line, self.second_line = key, first.line + 1, second.line + 1


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that names a key twice (merge keys `<<` excepted:
    overriding a merged key is what they are for)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: construction below reports it
                continue
            if first is not key_node.start_mark:
                raise DuplicateKeyError(key, first, key_node.start_mark)
        return super().construct_mapping(node, deep)


def _explain_yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, DuplicateKeyError):
        return ConfigError(f"{path}, line {exc.second_line}: {exc.problem}")
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return ConfigError(f"{path}{where}: invalid YAML: {problem}")


def load_yaml(path: Path, text: str | None = None) -> Any:
    """A user's YAML file as data (no schema, no line lookups): bad YAML or a key written twice is a
    `ConfigError` naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _explain_yaml_error(path, exc) from None


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
            self.node = yaml.compose(text, Loader=UniqueKeyLoader)
        except yaml.YAMLError as exc:
            raise _explain_yaml_error(path, exc) from None
        self.data = load_yaml(path, text)
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
