"""Config files (`--config FILE`): TOML, JSON or YAML by suffix, read into a `ConfigFile`.

Reading is parsing plus *where*: the line of every key in the source text, so any error about
the file (a syntax error, an unknown key, a bad value found later by `lab.levels.build_config`)
is one line naming the file, the line and the key, whatever the format. The values themselves
are checked once, by `RunConfig`, when they are laid over a preset. A file may also describe a
study: a `[sweep]` table (field = list of values) and a `[study]` table (`name`, `seeds`); this
module only reads and checks their shape, the queue expands them.

The other direction is `render_template`: every field of a config with its value and a comment
from `FIELD_HELP`, in any of the three formats, that reads back as the same config.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.config import FIELD_HELP, RunConfig, config_fields
from lab.errors import ConfigError, NotFoundError, describe_os_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FORMATS = {".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}
FORMAT_NAMES = ("toml", "json", "yaml")
YAML_MISSING = "YAML config files need PyYAML: pip install 'cifar-lab-console[yaml]'"
STUDY_KEYS = ("name", "seeds")
MAX_SEEDS = 1000
COMMENT = "//"  # JSON has no comments: a top-level key starting with // is one, and is skipped

Key = tuple[str, ...]


@dataclass(frozen=True)
class ConfigFile:
    """A config file, parsed: `fields` (RunConfig fields, unchecked values), the study's
    `sweep` ({field: [values]}), `study` (its name) and `seeds`, and the line of each key."""

    path: Path
    fields: dict[str, Any]
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    study: str | None = None
    seeds: int | None = None
    lines: dict[Key, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_study(self) -> bool:
        """A `[sweep]` or `[study]` table: many jobs, for `lab submit`, not one run."""
        return bool(self.sweep) or self.study is not None or self.seeds is not None

    def line(self, *key: str) -> int | None:
        """The line of `key` (a path: "epochs", or "sweep", "lr"), else of its nearest table."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

    def error(self, message: str, *key: str, hint: str | None = None) -> ConfigError:
        """One line: `FILE:LINE: message` (the message names the key)."""
        line = self.line(*key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {message}", hint=hint, key=key[-1] if key else None)

    def study_error(self, what: str) -> ConfigError:
        """The refusal of a command that takes one config, not a study."""
        table = "sweep" if self.sweep else "study"
        return self.error(f"a study file: {what}", table)


def read_config_file(path: Path) -> ConfigFile:
    """Parse `path` by its suffix and check its shape (known keys, the study's tables); a
    missing file is `NotFoundError`, anything else wrong one `ConfigError` line."""
    if not path.is_file():
        raise NotFoundError(f"config file {path} does not exist")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        which = f"not {path.suffix!r}" if path.suffix else "and this file has none"
        raise ConfigError(f"{path}: a config file's suffix is .toml, .json, .yaml or .yml, "
                          f"{which}")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise describe_os_error(exc) from None
    data, lines = _PARSERS[kind](path, text)
    return _shape(ConfigFile(path, {}, lines=lines), data)


def _shape(empty: ConfigFile, data: Any) -> ConfigFile:
    """Split a parsed document into fields, sweep and study, refusing what fits none."""
    if data is None:  # an empty YAML document
        data = {}
    if not isinstance(data, dict):
        raise empty.error("a config file must hold a table of fields (key = value)")
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith(COMMENT))}
    sweep = data.pop("sweep", {})
    study = data.pop("study") if isinstance(data.get("study"), dict) else {}
    known = config_fields()
    unknown = [k for k in data if k not in known]
    if unknown:
        first = min(unknown, key=lambda k: empty.line(str(k)) or 0)
        raise _unknown(empty, first, known + ["sweep", "study"])
    if not isinstance(sweep, dict):
        raise empty.error("sweep: must be a table of field = [values, ...]", "sweep")
    for name, values in sweep.items():
        if name not in known:
            raise _unknown(empty, name, known, "sweep")
        if not isinstance(values, list):
            raise empty.error(f"sweep {name}: must be a list of values, e.g. "
                              f"{name} = [a, b]", "sweep", name)
        if not values:
            raise empty.error(f"sweep {name}: the list of values is empty", "sweep", name)
    for name in study:
        if name not in STUDY_KEYS:
            raise _unknown(empty, name, list(STUDY_KEYS), "study")
    name, seeds = study.get("name"), study.get("seeds")
    if name is not None:
        try:
            RunConfig().replace(study=name)
        except ConfigError as exc:
            raise empty.error(exc.message.replace("study=", "study name=", 1), "study",
                              "name") from None
    if seeds is not None and (type(seeds) is not int or not 1 <= seeds <= MAX_SEEDS):
        raise empty.error(f"study seeds={seeds!r}: must be a whole number from 1 to "
                          f"{MAX_SEEDS}", "study", "seeds")
    return ConfigFile(empty.path, data, {k: list(v) for k, v in sweep.items()}, name, seeds,
                      empty.lines)


def _unknown(file: ConfigFile, name: Any, known: list[str], *table: str) -> ConfigError:
    close = difflib.get_close_matches(str(name), known, n=1)
    where = f"in [{table[0]}] " if table else ""
    return file.error(f"unknown config key {where}{str(name)!r}", *table, str(name),
                      hint=f"did you mean {close[0]!r}?" if close else None)


# ---- the three parsers: (data, {key path: line}) --------------------------------------------
def _syntax(path: Path, kind: str, line: int | None, problem: str, text: str) -> ConfigError:
    lines = text.splitlines()
    line = min(line, len(lines)) or None if line else None  # an error at the end: the last line
    source = lines[line - 1].strip() if line else ""
    near = f" near {source[:40]!r}" if source else ""
    where = f"{path}:{line}" if line else str(path)
    return ConfigError(f"{where}: not valid {kind}: {problem}{near}")


def _parse_json(path: Path, text: str) -> tuple[Any, dict[Key, int]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _syntax(path, "JSON", exc.lineno, exc.msg, text) from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting too deep
        raise ConfigError(f"{path}: not usable JSON: {type(exc).__name__}: "
                          f"{str(exc)[:80]}") from None
    lines, twice = _json_lines(text)
    if twice:
        key, line = twice
        raise ConfigError(f"{path}:{line}: {'.'.join(key)} is given twice (first on line "
                          f"{lines[key]})")
    return data, lines


def _json_lines(text: str) -> tuple[dict[Key, int], tuple[Key, int] | None]:
    """The line of every object key of a valid JSON text (keys inside arrays are skipped),
    and the first key given twice in one object."""
    lines: dict[Key, int] = {}
    stack: list[list[Any]] = []  # [bracket, path of the container, path of its last key]
    line, i = 1, 0
    while i < len(text):
        c = text[i]
        if c == "\n":
            line += 1
        elif c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            top = stack[-1] if stack else None
            if top is not None and top[0] == "{" and top[2] is None and top[1] is not None:
                key = (*top[1], json.loads(text[i:j + 1]))
                if key in lines:
                    return lines, (key, line)
                lines[key], top[2] = line, key
            i = j
        elif c in "{[":
            top = stack[-1] if stack else None
            path = () if top is None else top[2] if top[0] == "{" else None
            stack.append([c, path if c == "{" else None, None])
        elif c in "}]":
            stack.pop()
        elif c == "," and stack and stack[-1][0] == "{":
            stack[-1][2] = None
        i += 1
    return lines, None


_TOML_KEY = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_TOML_HEADER = re.compile(rf"^\s*\[\[?\s*({_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*)\s*\]")
_TOML_ASSIGN = re.compile(rf"^\s*({_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*)\s*=")
_TOML_PART = re.compile(_TOML_KEY)
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)|\s*\(at end of document\)")


def _toml_path(dotted: str) -> Key:
    parts = [p.group(0) for p in _TOML_PART.finditer(dotted)]
    return tuple(json.loads(p) if p.startswith('"') else p.strip("'") for p in parts)


def _parse_toml(path: Path, text: str) -> tuple[Any, dict[Key, int]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"at line (\d+)", message)
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        if line is None and "end of document" in message:
            line = len(text.splitlines()) or None
        raise _syntax(path, "TOML", line, _TOML_POSITION.sub("", message), text) from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: not usable TOML: {type(exc).__name__}: "
                          f"{str(exc)[:80]}") from None
    return data, _toml_lines(text)


def _toml_lines(text: str) -> dict[Key, int]:
    """The line of every key of a valid TOML text, as a path from the root ([sweep] lr = ...
    is ("sweep", "lr")); lines inside multi-line strings are skipped."""
    lines: dict[Key, int] = {}
    table: Key = ()
    inside: str | None = None  # the delimiter of the multi-line string we are in
    for number, source in enumerate(text.splitlines(), 1):
        if inside is not None:
            if source.count(inside) % 2:
                inside = None
            continue
        header = _TOML_HEADER.match(source)  # [table] or [[array of tables]]
        if header:
            table = _toml_path(header.group(1))
            lines.setdefault(table, number)
        else:
            assign = _TOML_ASSIGN.match(source)
            if assign:
                key = table + _toml_path(assign.group(1))
                for n in range(len(table) + 1, len(key) + 1):
                    lines.setdefault(key[:n], number)
        for delimiter in ('"""', "'''"):
            if source.count(delimiter) % 2:
                inside = delimiter
    return lines


def _parse_yaml(path: Path, text: str) -> tuple[Any, dict[Key, int]]:
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{path}: {YAML_MISSING}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise _syntax(path, "YAML", mark.line + 1 if mark else None,
                      exc.problem or exc.context or "", text) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc)[:80]}") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: not usable YAML: {type(exc).__name__}: "
                          f"{str(exc)[:80]}") from None
    finally:
        loader.dispose()
    lines: dict[Key, int] = {}
    _yaml_lines(path, node, (), lines)
    return data, lines


def _yaml_lines(path: Path, node: Any, at: Key, lines: dict[Key, int]) -> None:
    if type(node).__name__ != "MappingNode":
        return
    for key_node, value_node in node.value:
        key = (*at, str(key_node.value))
        line = key_node.start_mark.line + 1
        if key in lines:
            raise ConfigError(f"{path}:{line}: {'.'.join(key)} is given twice (first on line "
                              f"{lines[key]})")
        lines[key] = line
        _yaml_lines(path, value_node, key, lines)


_PARSERS: dict[str, Callable[[Path, str], tuple[Any, dict[Key, int]]]] = {
    "toml": _parse_toml, "json": _parse_json, "yaml": _parse_yaml}


# ---- templates --------------------------------------------------------------------------------
def render_template(config: RunConfig, fmt: str, title: str) -> str:
    """Every field of `config` with its value and its `FIELD_HELP` comment, as a `fmt` file
    that `--config` reads back as `config` exactly (JSON holds its comments in "//" keys)."""
    if fmt not in FORMAT_NAMES:
        raise ConfigError(f"format {fmt!r}: choose toml, json or yaml")
    header = [
        f"lab config: {title}. Every field is here with its value;",
        "a file needs only `level` and the fields it changes: delete the other lines.",
        "Layers: the level's preset (or --recipe tuned) <- this file <- named options",
        "(--epochs ...) <- --set KEY=VALUE. Use: lab run --config FILE, lab submit --config FILE.",
        "A study (lab submit only) adds a sweep table (field: list of values) and a study table",
        "(name, seeds).",
    ]
    values = config.to_dict()
    if fmt == "json":
        doc: dict[str, Any] = {COMMENT: header}
        for name, value in values.items():
            doc[f"{COMMENT} {name}"] = FIELD_HELP[name]
            doc[name] = value
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    sep = " =" if fmt == "toml" else ":"
    out = [f"# {line}" for line in header]
    for name, value in values.items():
        out += ["", f"# {FIELD_HELP[name]}", f"{name}{sep} {_literal(value)}"]
    return "\n".join(out) + "\n"


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b",
            "\f": "\\f"}


def _literal(value: Any) -> str:
    """A value as TOML and YAML (flow style) both read it back: none as a string (TOML has no
    null; level takes "none"), floats always with a point (YAML 1.1 reads 1e-05 as a string),
    strings double-quoted with every unprintable character escaped."""
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        mantissa, e, exponent = repr(value).partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return mantissa + (e + ("" if exponent[0] in "+-" else "+") + exponent if e else "")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if _unprintable(c) else c)
                         for c in str(value)) + '"'


def _unprintable(c: str) -> bool:
    o = ord(c)
    return o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF)
