"""Test-time views, by count: the one check of a (flip, shift) choice, read by recipes and `reslab eval`. No torch
here: the recipes, and so every command's flags, use it."""

from __future__ import annotations

from reslab.errors import ConfigError


def count_views(flip: bool, shift: int) -> int:
    """How many views `tta_views` makes; the one check of a (flip, shift) choice, for recipes and `reslab eval`."""
    if not isinstance(shift, int) or shift < 0:
        raise ConfigError(f"test-time shift must be an integer >= 0, got {shift!r}")
    if shift and not flip:
        raise ConfigError(f"test-time shift {shift} needs the flip views too (--tta / tta_flip): 6 views in all")
    return (2 if flip else 1) * (3 if shift else 1)


def views_label(flip: bool, shift: int) -> str:
    n = count_views(flip, shift)
    return "1 view" if n == 1 else "flip (2 views)" if not shift else f"{n} views (flip x shifts 0, +-{shift} px)"
