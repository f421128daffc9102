"""What a user hands cgbench, read safely: YAML files (config files, sweep specs) bounded in size
and without aliases, text that must be UTF-8, and values quoted briefly in error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cgbench.errors import ConfigError


def shown(value: Any, limit: int = 40) -> str:
    """``value`` as an error message quotes it: what a list or mapping is, not its contents (an
    alias bomb expands to billions of items), and at most ``limit`` characters of a scalar."""
    if isinstance(value, (list, tuple, set, dict)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'} of {len(value)} item(s)"
    if value is None:
        return "an empty value"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}... ({len(text)} characters)"


def read_utf8(path: Path, what: str) -> str:
    """The text of ``path``; a file that is not UTF-8 is a one-line error."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {str(path)!r} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
                          f"{err.start}); save it as UTF-8") from None
    except OSError as err:
        raise ConfigError(f"cannot read {what} {str(path)!r} ({err.strerror}); check the path") from None


#: The largest YAML file (a config file, a sweep spec) read: far above any real one.
MAX_YAML_BYTES = 1 << 20


class _NoAliases(yaml.SafeLoader):
    """Safe YAML without aliases. An alias (``*name``) repeats the node its anchor names, so a few
    lines of nested aliases stand for billions of values (an alias bomb) that any code walking
    them, or an error message quoting them, expands; cgbench's files never need one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasFound(event.anchor, event.start_mark.line + 1)
        return super().compose_node(parent, index)


class _AliasFound(Exception):
    def __init__(self, anchor: str, line: int):
        super().__init__(anchor, line)
        self.anchor, self.line = anchor, line


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path`` (a ``what``: "config file", "sweep spec"), read safely: at most
    :data:`MAX_YAML_BYTES`, no aliases, no tags beyond YAML's own; each refusal is one line."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ConfigError(f"cannot read {what} {str(path)!r} ({err.strerror}); check the path") from None
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{what} {str(path)!r} is {size} bytes; the limit is {MAX_YAML_BYTES} (a {what} holds a "
                          "few keys): give the right file")
    try:
        return yaml.load(read_utf8(path, what), Loader=_NoAliases)
    except _AliasFound as found:
        raise ConfigError(f"{what} {str(path)!r} uses a YAML alias (*{found.anchor[:40]}) at line {found.line}; "
                          "aliases are refused (nested ones expand without bound): write the value out") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML{where}; fix its syntax") from None
    except RecursionError:
        raise ConfigError(f"{what} {str(path)!r} nests lists or mappings too deeply to read; flatten it") from None
    except ValueError:  # an integer beyond Python's limit on digits converted (4300)
        raise ConfigError(f"{what} {str(path)!r} holds a number with thousands of digits; fix the value") from None


