"""The large-image training augmentations a recipe can name, as data (`reslab.data.views` builds them). No torch
here: the recipes, and so every command's flags, read the names."""

from __future__ import annotations

# ImageNet's per-channel mean and std of RGB pixels in [0, 1] (torchvision's, and what other projects' weights were
# normalised with): the "channel" normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The training augmentations a recipe can name (`Recipe.augmentation`; "cifar" is the in-memory pad-crop-flip).
PRESETS: dict[str, dict[str, object]] = {
    "imagenet-paper": {},  # Sec. 3.4: scale 256-480, 224 crop, flip, PCA lighting, per-pixel mean
    "imagenet-torchvision": {"style": "rrc", "lighting": 0.0, "normalization": "channel"},  # torchvision's references
}
