"""Options declared once: each option is a field of a frozen options dataclass that carries its help, flag and parser.

From those fields come the CLI's click options with their `[default: ...]` help (migrate.cli.params), the names of
the MIGRATE_* environment variables and of the migrate.toml keys, the layered resolution (flag > environment variable
> the verb's [section] of the file > the file's top level > the field's default), and the README's option tables
(checked by tests/test_docs.py). A field without `option(...)` metadata is a library-only setting.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final

from migrate.errors import ConfigError

DEFAULT_CONFIG_FILE: Final = "migrate.toml"
ENV_PREFIX: Final = "MIGRATE_"
_KEY: Final = "migrate.option"

Parser = Callable[[Any], Any]


@dataclass(frozen=True)
class Option:
    help: str
    flag: str = ""  # the long flag; "" means --<field-name>
    metavar: str | None = None
    parse: Parser | None = None  # a value given as text (flag, environment, file) or as TOML -> the field's value
    choices: tuple[str, ...] = ()
    multiple: bool = False  # a repeatable flag; "a,b" in the environment or the file; the field holds a tuple
    switch: bool = False  # a boolean with --flag / --no-flag (default: a plain --flag)
    short: str | None = None  # e.g. "-y"
    shown_default: str | None = None  # the [default: ...] text when the default's own text is not what users type
    group: bool = False  # a nested options dataclass: its fields are options of the same command


def option(default: Any = None, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field that is also a command-line option, an environment variable and a config-file key."""
    return field(default=default, metadata={_KEY: Option(help, **kwargs)})


def group(cls: type) -> Any:
    """A dataclass field holding another options dataclass whose fields are options of the same command."""
    return field(default_factory=cls, metadata={_KEY: Option("", group=True)})


@dataclass(frozen=True)
class Setting:
    """One option as the resolution sees it: its name (MIGRATE_<NAME>, the file key), its field and its owner."""

    name: str
    field: str
    option: Option
    default: Any
    owner: type

    @property
    def flag(self) -> str:
        return self.option.flag or "--" + self.field.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def shown_default(self) -> str | None:
        if self.option.shown_default is not None:
            return self.option.shown_default
        default = self.default
        if default is None or default == () or (isinstance(default, bool) and not self.option.switch):
            return None
        if isinstance(default, bool):
            return "on" if default else "off"
        if isinstance(default, float) and default.is_integer():
            return str(int(default))
        return str(default.value if isinstance(default, Enum) else default)

    def convert(self, raw: Any) -> Any:
        if self.option.multiple:
            items = to_list(raw)
            return self.option.parse(items) if self.option.parse else items
        if isinstance(self.default, bool) or self.option.switch:
            return to_bool(raw)
        if self.option.choices and str(raw) not in self.option.choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(self.option.choices)}")
        return self.option.parse(raw) if self.option.parse else raw


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The options of an options dataclass, nested groups flattened, in declaration order."""
    out: list[Setting] = []
    for f in dataclasses.fields(cls):
        opt: Option | None = f.metadata.get(_KEY)
        if opt is None:
            continue
        if opt.group:
            out += settings_of(_field_type(cls, f))
            continue
        name = (opt.flag or f.name).lstrip("-").replace("-", "_")
        default = f.default if f.default is not MISSING else None
        out.append(Setting(name, f.name, opt, default, cls))
    return tuple(out)


def _field_type(cls: type, f: dataclasses.Field[Any]) -> type:
    if f.default_factory is not MISSING and isinstance(f.default_factory, type):
        return f.default_factory
    raise TypeError(f"{cls.__name__}.{f.name}: a group needs default_factory=<options class>")


def build(cls: type, values: Mapping[str, Any], **overrides: Any) -> Any:
    """An instance of `cls` from resolved values (by setting name), nested groups included; fields that are not
    options keep their defaults unless given in `overrides`."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        opt: Option | None = f.metadata.get(_KEY)
        if f.name in overrides:
            kwargs[f.name] = overrides[f.name]
        elif opt is not None and opt.group:
            kwargs[f.name] = build(_field_type(cls, f), values)
        elif opt is not None:
            name = (opt.flag or f.name).lstrip("-").replace("-", "_")
            if name in values:
                kwargs[f.name] = values[name]
    return cls(**kwargs)


# -- layered resolution --------------------------------------------------------------------------------------------


def load_file(path: str | None) -> dict[str, Any]:
    """Read migrate.toml (an explicit path must exist; the default one is optional)."""
    candidate = Path(path) if path else Path(DEFAULT_CONFIG_FILE)
    if not candidate.exists():
        if path:
            raise ConfigError(f"config file not found: {path}", "give an existing --config file")
        return {}
    try:
        return tomllib.loads(candidate.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {candidate}: {_short(exc)}",
                          "the file must be TOML text (see README.md, Configuration)") from None


def resolve(settings: Iterable[Setting], flags: Mapping[str, Any], verb: str | None = None,
            env: Mapping[str, str] | None = None, file_values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One value per setting: the flag, else MIGRATE_<NAME>, else the verb's [section] or the file's top level, else
    the default. A value that does not parse is a ConfigError naming where it came from."""
    env = os.environ if env is None else env
    file_values = file_values or {}
    section = file_values.get(verb, {}) if verb else {}
    merged: dict[str, Any] = {}
    for s in settings:
        raw, origin = _pick(s, flags, env, section, file_values)
        try:
            merged[s.name] = s.default if raw is None else s.convert(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid value for {s.flag} (from {origin}): {_short(exc)}",
                              f"see `migrate {verb or ''} --help`".replace("  ", " ")) from None
    return merged


def check_file_keys(file_values: Mapping[str, Any], sections: Mapping[str, Iterable[Setting]]) -> None:
    """Refuse keys migrate.toml may not hold: a misspelt key must not be ignored silently."""
    known = {s.name for settings in sections.values() for s in settings}
    for key, value in file_values.items():
        if key in sections and isinstance(value, dict):
            own = {s.name for s in sections[key]}
            unknown = sorted(set(value) - own)
            if unknown:
                raise ConfigError(f"unknown key in [{key}] of the config file: {', '.join(unknown)}",
                                  f"[{key}] takes: {', '.join(sorted(own))}")
        elif key not in known:
            raise ConfigError(f"unknown key in the config file: {key}",
                              "use the option names of `migrate <verb> --help`, with underscores (e.g. batch_size)")


def _pick(s: Setting, flags: Mapping[str, Any], env: Mapping[str, str], section: Mapping[str, Any],
          top: Mapping[str, Any]) -> tuple[Any, str]:
    if flags.get(s.name) not in (None, ()):
        return flags[s.name], s.flag
    if env.get(s.env) not in (None, ""):
        return env[s.env], s.env
    if s.name in section:
        return section[s.name], "config file"
    if s.name in top:
        return top[s.name], "config file"
    return None, "default"


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


# -- parsers ---------------------------------------------------------------------------------------------------------


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def to_list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(p.strip() for item in items for p in str(item).split(",") if p.strip())


def number(minimum: float, *, above: bool = False, unit: str = "") -> Parser:
    """A finite number >= minimum (> minimum with above=True); NaN and infinities are refused."""
    def parse(value: Any) -> float:
        got = float(value)
        if not math.isfinite(got) or got < minimum or (above and got == minimum):
            bound = f"above {minimum:g}" if above else f"{minimum:g} or more"
            raise ValueError(f"must be a finite number{unit} {bound}, got {value!r}")
        return got
    return parse


positive_seconds: Final = number(0, above=True, unit=" of seconds")
non_negative_seconds: Final = number(0, unit=" of seconds")
positive_number: Final = number(0, above=True)


def integer(minimum: int) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"not a whole number: {value!r}")
        number = int(str(value).strip()) if not isinstance(value, int | float) else int(value)
        if number < minimum:
            raise ValueError(f"must be {minimum} or more, got {number}")
        return number
    return parse


def path(value: Any) -> Path:
    return Path(str(value))


def paths(values: Any) -> tuple[Path, ...]:
    """A repeatable path option (a flag given several times; "a,b" in the environment or the file)."""
    return tuple(path(v) for v in values)


_UNITS: Final = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
                 "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def size(value: Any) -> int:
    """'16mb', '64MiB', '1048576' -> bytes (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (use e.g. 16mb, 512kb, 1048576)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]
