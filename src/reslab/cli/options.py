"""What several subcommands share: the parser class, the data and device flags, and flags read off dataclass fields,
so that every default and help text is the one declared beside its field (`TrainConfig`, `Recipe`)."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

from reslab.cli.parser import DefaultsFormatter, DocstringFormatter, Parser, boolean, positive_int
from reslab.engine.config import RESIZE_HELP, TrainConfig
from reslab.engine.precision import PRECISIONS

__all__ = ["DefaultsFormatter", "DocstringFormatter", "Parser", "boolean", "positive_int"]


def parser_of(cls: type, name: str) -> Callable[[str], Any]:
    """The parser of a dataclass field's flag, from its type hint; optional fields also take ``none``."""
    hint = typing.get_type_hints(cls)[name]
    # Only a union's arguments are alternatives: tuple[str, ...]'s are its element type and an Ellipsis.
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if union else (hint,)
    base = next(m for m in members if m is not type(None))
    if typing.get_origin(base) is tuple:  # comma-separated: milestones (floats), frozen parts (names)
        convert: Callable[[str], Any] = _floats if typing.get_args(base)[0] is float else _names
    else:
        convert = {bool: boolean, int: int, float: float}.get(base, str)
    if type(None) not in members:
        return convert

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else convert(text)

    parse.__name__ = f"{getattr(base, '__name__', 'value')} or none"  # argparse names the type in its error
    return parse


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.5,0.75, got {text!r}") from e


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def field_of(cls: type, name: str) -> Any:
    return next(f for f in fields(cls) if f.name == name)


def default_of(cls: type, name: str) -> Any:
    f = field_of(cls, name)
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def add_field(group: Any, name: str, cls: type = TrainConfig, **kwargs: Any) -> None:
    """``--name`` for a dataclass field: its type, default and help come from the field."""
    kwargs.setdefault("type", parser_of(cls, name))
    kwargs.setdefault("default", default_of(cls, name))
    kwargs.setdefault("help", field_of(cls, name).metadata.get("help", ""))
    kwargs.setdefault("dest", name)
    group.add_argument(f"--{name.replace('_', '-')}", **kwargs)


def add_switch(group: Any, flag: str, name: str, cls: type = TrainConfig) -> None:
    """A flag that flips a boolean field away from its default (``--no-augment`` for ``augment``)."""
    off = default_of(cls, name) is True
    help = field_of(cls, name).metadata["help"]
    group.add_argument(flag, dest=name, action="store_false" if off else "store_true",
                       help=f"off: {help}" if off else help)  # fmt: skip


def add_data_args(p: argparse.ArgumentParser, streamed: bool = True) -> None:
    """The data flags; ``streamed``: the command can also stream large images (``reslab train``), so it has
    --workers and --image-size says what it means for them."""
    g = p.add_argument_group("data")
    add_field(g, "data", metavar="DATA")
    add_field(g, "data_dir", metavar="DIR")
    if streamed:
        add_field(g, "image_size", metavar="S")
        add_field(g, "workers", metavar="N")
    else:
        add_field(g, "image_size", metavar="S", help=RESIZE_HELP)
    add_switch(g, "--strict", "strict_data")


def add_device_args(p: argparse.ArgumentParser) -> None:
    add_field(p, "device")
    add_field(p, "precision", choices=PRECISIONS)


def add_trained_model(p: argparse.ArgumentParser) -> None:
    """The positional argument naming a trained classification model, in every command that takes one."""
    p.add_argument("model", metavar="CHECKPOINT_OR_NAME",
                   help="a checkpoint.pt, a run folder, a reslab safetensors file, or the name of a model with "
                   "shipped weights")  # fmt: skip
