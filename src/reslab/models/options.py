"""The choices a unit takes (Sec. 3.2-3.3), declared once and without torch: `reslab.models.blocks` builds them, and
every command's flags offer them."""

SHORTCUT_OPTIONS = ("A", "B", "C")
ZERO_PADS = ("after", "both")  # where option A's zero channels go
MODES = ("residual", "plain", "highway")
