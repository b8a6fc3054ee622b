"""The large-image training augmentations a recipe can name, as data (`reslab.data.views` builds them). No torch
here: the recipes, and so every command's flags, read the names."""

from __future__ import annotations

# The training augmentations a recipe can name (`Recipe.augmentation`; "cifar" is the in-memory pad-crop-flip).
PRESETS: dict[str, dict[str, object]] = {
    "imagenet-paper": {},  # Sec. 3.4: scale 256-480, 224 crop, flip, PCA lighting, per-pixel mean
    "imagenet-torchvision": {"style": "rrc", "lighting": 0.0, "normalization": "channel"},  # torchvision's references
}
