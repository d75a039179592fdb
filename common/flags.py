"""Command-line flags made from dataclass fields.

A setting is defined once, on the field of the dataclass it fills: its default, its help, its check
and its flag's name. Every command builds its parser from those fields (`add_flags`) and fills the
dataclass from what was parsed (`values`), so a flag and the setting it sets cannot drift apart.
"""

import argparse
import dataclasses
import math
from typing import Any, Callable, Dict, Iterable, Optional, Tuple


def setting(default: Any, help_text: str, *, parse: Optional[Callable[[str], Any]] = None,
            choices: Optional[Tuple[Any, ...]] = None, bounds: Optional[Tuple[float, float]] = None,
            flag: Optional[str] = None, **more: Any):
    """A dataclass field that is also a flag.

    Args:
      default: the field's default, and the flag's.
      help_text: the flag's help.
      parse: turns the flag's text into the value, raising argparse.ArgumentTypeError with what is
        wrong; without it a number is checked against `bounds`, and a bool is --x/--no-x.
      choices: the values allowed.
      bounds: (low, high) a number must lie within, both ends included.
      flag: the flag's name, if not `--` and the field's name with '-' for '_'.
      **more: argparse settings (`action`, `metavar`, `nargs`), and "kubeflow" (pipeline.options).
    """
    argparse_keys = ("action", "metavar", "nargs", "required")
    settings = {k: v for k, v in more.items() if k in argparse_keys}
    if flag:
        settings["flag"] = flag
    metadata = {"help": help_text, "parse": parse, "choices": choices, "bounds": bounds, "flag": settings}
    metadata.update({k: v for k, v in more.items() if k not in argparse_keys})
    return dataclasses.field(default=default, metadata=metadata)


def bounds_problem(field: dataclasses.Field, value: Any) -> Optional[str]:
    """What is wrong with `value` for a field with `bounds` (not finite, or outside them); None if
    nothing. The one range check of a setting: its flag, a KFP parameter and the code all ask it."""
    low, high = field.metadata.get("bounds") or (None, None)
    if low is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:  # NaN too
        shown = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)
        return f"expected a number from {low:g} to {high:g}, got {shown}"
    return None


def checked_number(kind, problem: Callable[[Any], Optional[str]]):
    """An argparse type: a `kind` (int or float) that `problem(value)` finds nothing wrong with;
    its message names the text as given."""
    def parse(text: str):
        value = kind(text)
        said = problem(value)
        if said:
            raise argparse.ArgumentTypeError(said.rpartition(", got ")[0] + f", got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse: "invalid int value: 'x'"
    return parse


def within(kind, low: float, high: float, what: str):
    """An argparse type: a `kind` (int or float) from `low` to `high`, both included (a float must
    be finite); else "expected <what>, got <text>"."""
    def parse(text: str):
        value = kind(text)
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse: "invalid int value: 'x'"
    return parse


def _kind(field: dataclasses.Field):
    return {"bool": bool, "int": int, "float": float, "str": str}.get(field.type, field.type)


def flag(field: dataclasses.Field) -> Tuple[str, Dict[str, Any]]:
    """The flag name and argparse settings of a field made by `setting`."""
    meta = field.metadata
    settings = dict(meta.get("flag", {}))
    name = settings.pop("flag", "--" + field.name.replace("_", "-"))
    settings.update(default=field.default, help=meta["help"], dest=field.name)
    if name[0] != "-":  # a positional argument
        del settings["dest"]
    elif "flag" in meta.get("flag", {}) and "action" not in settings:
        settings.setdefault("metavar", name.lstrip("-").upper().replace("-", "_"))
    if "action" in settings:
        if settings["action"] == "append":
            settings["default"] = []
        if meta.get("parse"):
            settings["type"] = meta["parse"]
        return name, settings
    kind = _kind(field)
    if meta.get("parse"):
        settings["type"] = meta["parse"]
    elif meta.get("choices"):
        settings["choices"] = meta["choices"]
    elif kind is bool:
        settings["action"] = argparse.BooleanOptionalAction
    elif kind in (int, float):
        settings["type"] = checked_number(kind, lambda value: bounds_problem(field, value))
    return name, settings


def fields(cls, only: Optional[Iterable[str]] = None, skip: Iterable[str] = ()) -> Tuple[dataclasses.Field, ...]:
    """The fields of `cls` that are flags (made by `setting`), all or `only` these, less `skip`."""
    only = set(only) if only is not None else None
    return tuple(f for f in dataclasses.fields(cls) if "help" in f.metadata and f.name not in skip
                 and (only is None or f.name in only))


def add_flags(parser, cls, only: Optional[Iterable[str]] = None, skip: Iterable[str] = ()) -> None:
    """Adds to `parser` (or an argument group) a flag for each of `cls`'s fields; see `fields`."""
    for field in fields(cls, only, skip):
        name, settings = flag(field)
        parser.add_argument(name, **settings)


def values(cls, args: argparse.Namespace, skip: Iterable[str] = ()) -> Dict[str, Any]:
    """The parsed values of `cls`'s flags, by field name, ready for `cls(**...)`: a repeated flag's
    list becomes a tuple where the field's default is one."""
    given = vars(args)
    found = {}
    for field in fields(cls, skip=skip):
        if field.name in given:
            value = given[field.name]
            found[field.name] = tuple(value) if isinstance(field.default, tuple) and value is not None else value
    return found


def key_value(what: str = "NAME=VALUE", flag_name: str = ""):
    """An argparse type: `KEY=VALUE` text as a (key, value) pair, the key not empty."""
    def parse(text: str) -> Tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{flag_name + ' takes' if flag_name else 'expected'} {what}, "
                                             f"got {text!r}")
        return key, value
    return parse
