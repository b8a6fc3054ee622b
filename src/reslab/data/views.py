"""What the network sees of one large image: decoding, the training augmentations and the test-time views (Sec. 3.4).

Training (``style="scale"``, the paper): "The image is resized with its shorter side randomly sampled in [256, 480]
for scale augmentation. A 224x224 crop is randomly sampled from an image or its horizontal flip ... The standard
color augmentation in [21] is used." ``style="rrc"`` is torchvision's RandomResizedCrop (area 8%-100%, aspect 3/4-4/3)
instead, as its ResNet-50 v1 weights were trained. All sizes scale with the crop size (`LargeAugment.for_crop`), so
smaller images keep the paper's proportions.

Testing: the centre crop of the image resized to shorter side 256; the 10 crops (AlexNet's, which the paper cites:
the 4 corners and the centre of the central 256 square, and their mirrors); and the paper's fully-convolutional
form (Sec. 3.4, from [41, 13]): the whole image resized so its shorter side is each of {224, 256, 384, 480, 640},
run through the network as it is (global average pooling accepts any size), and the softmax averaged over the
scales and their mirrors. The paper's form converts the fc layer to a convolution and averages its class-score map
over positions; that average equals the fc layer applied to the average-pooled features (both are linear), which
is what the network computes on a whole image, so the scores are the same.

Speed: a JPEG is decoded by libjpeg-turbo (simplejpeg), at 1/2, 1/4 or 1/8 scale by its DCT scaling (as PIL's
``draft``) whenever the output needs no more pixels than that (test views too: their pixels then differ slightly
from a full decode's); a training crop is resized straight from the source region it covers instead of resizing
the whole image first; images stay uint8 [3, H, W] tensors throughout. Random numbers come from a generator seeded
by (seed, epoch, image), so a view does not depend on which worker made it or when.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import simplejpeg
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from reslab.data.folders import to_rgb
from reslab.data.presets import PRESETS
from reslab.errors import ConfigError, DataError

STYLES = ("scale", "rrc")
NORMALIZATIONS = ("pixel", "channel")
PAPER_SCALES = (224, 256, 384, 480, 640)  # Sec. 3.4, multi-scale testing
# AlexNet's PCA colour augmentation ([21] Sec. 4.1): the eigen-decomposition of ImageNet's RGB covariance (pixels in
# [0, 1]), as in fb.resnet.torch, which the paper's authors pointed to for their training details.
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


@dataclass(frozen=True)
class LargeAugment:
    """How training images are augmented and test images resized; see the module doc.

    ``short_min``/``short_max``: the range of the training shorter side (style "scale"); ``test_short``: the shorter
    side of the centre crop and 10-crop views; ``lighting``: the std of the PCA colour augmentation (0: off);
    ``normalization``: "pixel" (the paper: the per-pixel mean subtracted) or "channel" (torchvision's per-channel mean
    and std).
    """

    style: str = "scale"
    crop: int = 224
    short_min: int = 256
    short_max: int = 480
    test_short: int = 256
    flip: bool = True
    lighting: float = 0.1
    normalization: str = "pixel"

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ConfigError(f"unknown augmentation style {self.style!r}; choose one of {', '.join(STYLES)}")
        if self.normalization not in NORMALIZATIONS:
            choices = ", ".join(NORMALIZATIONS)
            raise ConfigError(f"unknown normalization {self.normalization!r}; choose one of {choices}")
        if not 8 <= self.crop <= self.short_min <= self.short_max or self.test_short < self.crop:
            raise ConfigError(f"bad sizes: need 8 <= crop ({self.crop}) <= short_min ({self.short_min}) <= short_max "
                              f"({self.short_max}) and test_short ({self.test_short}) >= crop")  # fmt: skip
        if not 0 <= self.lighting < 10:
            raise ConfigError(f"lighting must be in [0, 10), got {self.lighting}")

    @classmethod
    def for_crop(cls, crop: int, **kw: object) -> LargeAugment:
        """The paper's sizes (256-480 around a 224 crop, 256 for testing) scaled to a crop of ``crop`` pixels."""
        s = crop / 224
        return cls(crop=crop, short_min=round(256 * s), short_max=round(480 * s), test_short=round(256 * s), **kw)

    def scales(self) -> tuple[int, ...]:
        """The multi-scale test sizes, Sec. 3.4's {224, 256, 384, 480, 640} scaled to this crop."""
        return tuple(round(v * self.crop / 224) for v in PAPER_SCALES)


def preset(name: str, crop: int = 224) -> LargeAugment:
    """The augmentation ``name`` of `PRESETS` at crop size ``crop`` (the paper's sizes scaled)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown large-image augmentation {name!r}; choose one of {', '.join(PRESETS)}")
    return LargeAugment.for_crop(crop, **PRESETS[name])


def is_jpeg(data: bytes) -> bool:
    return data[:2] == b"\xff\xd8"


def decode(data: bytes, need: float = 1.0) -> torch.Tensor:
    """An RGB image, uint8 [3, H, W], from encoded bytes. A JPEG is decoded by libjpeg-turbo through simplejpeg
    (the same pixels as PIL, faster), at 1/2, 1/4 or 1/8 scale when ``need`` (output pixels per source pixel)
    allows it, which the caller reads back from the returned size; other formats (and JPEGs simplejpeg refuses) by
    PIL."""
    if is_jpeg(data):
        try:
            h, w = simplejpeg.decode_jpeg_header(data)[:2]
            # Only the reductions libjpeg-turbo has SIMD code for (1/2, 1/4, 1/8): its 6/8 or 7/8 scaled IDCT is
            # slower than a full decode (measured in benchmarks/imagenet_data.py).
            k = next((k for k in (0.125, 0.25, 0.5) if k >= need), 1.0)
            rgb = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=math.ceil(h * k),
                                         min_width=math.ceil(w * k))  # fmt: skip
            return torch.from_numpy(rgb).permute(2, 0, 1)
        except ValueError:
            pass
    with Image.open(io.BytesIO(data)) as img:
        if img.format == "JPEG" and need < 1:
            img.draft("RGB", (math.ceil(img.size[0] * need), math.ceil(img.size[1] * need)))
        return torch.from_numpy(np.array(to_rgb(img))).permute(2, 0, 1)


def decode_jpegs(data: list[torch.Tensor], device: torch.device | str, names: list[str]) -> list[torch.Tensor]:
    """RGB images, uint8 [3, H, W] on ``device``, from encoded JPEGs (uint8 1-D CPU tensors; ``names`` for
    messages), decoded in one batch by torchvision (nvJPEG on a GPU, libjpeg-turbo on the CPU), always at full size.
    A batch the decoder refuses is decoded one image at a time; an image it refuses alone is decoded on the CPU
    (`decode`: PIL's tolerance), and one that nothing decodes stops the run with its name (the CPU workers' path
    skips unreadable images instead: it decodes before the batch is formed)."""
    if not data:
        return []
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        # torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec, which reslab does not need
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            pass
        out = []
        for encoded, name in zip(data, names, strict=True):
            try:
                out.append(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                try:
                    out.append(decode(encoded.numpy().tobytes()).to(device))
                except Exception as e:
                    raise DataError(
                        f"{name}: cannot be decoded ({type(e).__name__}); with --device-decode an "
                        "unreadable JPEG stops the run: train without it to skip such images"
                    ) from e
        return out


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header, without decoding."""
    if is_jpeg(data):
        try:
            h, w = simplejpeg.decode_jpeg_header(data)[:2]
            return w, h
        except ValueError:
            pass
    with Image.open(io.BytesIO(data)) as img:
        return img.size


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [3, H, W] to ``size`` (height, width): bilinear, antialiased (torchvision's uint8 kernel, as PIL's)."""
    return TF.resize(x, list(size), interpolation=TF.InterpolationMode.BILINEAR, antialias=True)


@dataclass(frozen=True)
class TrainPlan:
    """Where one training view comes from, drawn before any pixel is decoded: the crop's source ``box`` (x0, y0, x1,
    y1 in the image's pixels), ``need`` (output pixels per source pixel: how far a JPEG may be decoded reduced),
    ``mirror`` and the lighting ``alphas``. CPU workers decode and crop it (`train_view`); with device decoding the
    workers draw only the plan and the device decodes and crops the batch (`crop_view`): the same boxes either way."""

    box: tuple[float, float, float, float]
    need: float
    mirror: bool
    alphas: np.ndarray


def train_plan(w: int, h: int, aug: LargeAugment, rng: np.random.Generator) -> TrainPlan:
    """The `TrainPlan` of one view of a ``w`` x ``h`` image (the random numbers drawn in one fixed order)."""
    c = aug.crop
    if aug.style == "scale":
        short = int(rng.integers(aug.short_min, aug.short_max + 1))
        scale = short / min(w, h)
        side = c / scale  # the crop's side in source pixels
        x0, y0 = rng.uniform(0, w - side) if w > side else 0.0, rng.uniform(0, h - side) if h > side else 0.0
        box, need = (x0, y0, x0 + min(side, w), y0 + min(side, h)), scale
    else:
        box = _rrc_box(w, h, rng)
        need = max(c / (box[2] - box[0]), c / (box[3] - box[1]))
    mirror = bool(aug.flip and rng.random() < 0.5)
    alphas = rng.normal(0.0, aug.lighting, 3).astype(np.float32) if aug.lighting else np.zeros(3, np.float32)
    return TrainPlan(box, need, mirror, alphas)


def crop_view(x: torch.Tensor, plan: TrainPlan, width: int, crop: int) -> torch.Tensor:
    """The plan's view of ``x``, the image decoded at any reduction (its width against the source ``width`` says
    which): the box rounded out to whole pixels, resized straight to ``crop`` x ``crop``, mirrored if planned. Runs
    on whichever device holds ``x``."""
    k = x.shape[2] / width  # 1, or the draft's reduction
    left, top = int(plan.box[0] * k), int(plan.box[1] * k)
    right, bottom = max(left + 1, math.ceil(plan.box[2] * k)), max(top + 1, math.ceil(plan.box[3] * k))
    x = resize(x[:, top:bottom, left:right], (crop, crop))
    return x.flip(2) if plan.mirror else x


def train_view(data: bytes, aug: LargeAugment, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """One training view (uint8 [3, crop, crop]) and its lighting offsets (float32 [3] alphas; zeros if off).

    The crop's source region is rounded out to whole pixels and resized straight to ``crop`` x ``crop``: nearly the
    view that resizing the whole image and cropping it would give (the region stretched by under a pixel), without
    resizing the pixels the crop leaves out."""
    w, h = image_size(data)
    plan = train_plan(w, h, aug, rng)
    return crop_view(decode(data, plan.need), plan, w, aug.crop), plan.alphas


def _rrc_box(w: int, h: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """torchvision's RandomResizedCrop region: area 8%-100% of the image, log-uniform aspect ratio in [3/4, 4/3];
    after 10 failed tries the centre crop of the largest in-range aspect ratio."""
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return x0, y0, x0 + cw, y0 + ch
    ratio = w / h  # wider than 4/3: the full height and 4/3 of it as width; taller than 3/4: the full width
    cw, ch = (round(h * 4 / 3), h) if ratio > 4 / 3 else (w, round(w * 4 / 3)) if ratio < 3 / 4 else (w, h)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    return x0, y0, x0 + cw, y0 + ch


def resize_short(data: bytes, short: int) -> torch.Tensor:
    """The image resized (bilinear, antialiased) so that its shorter side is ``short``."""
    w, h = image_size(data)
    x = decode(data, short / min(w, h))
    s = short / min(x.shape[1:])
    return resize(x, (max(short, round(x.shape[1] * s)), max(short, round(x.shape[2] * s))))


def center_view(data: bytes, aug: LargeAugment) -> torch.Tensor:
    """The centre ``crop`` x ``crop`` of the image resized to shorter side ``test_short``."""
    return _crops(resize_short(data, aug.test_short), aug.crop)[4]


def ten_crop_views(data: bytes, aug: LargeAugment) -> list[torch.Tensor]:
    """The "standard 10-crop testing" the paper cites (AlexNet [21], Sec. 4.1 there): the image resized to shorter
    side ``test_short``, its central ``test_short`` square, and of that square the four corner crops and the centre
    crop and their mirror images (torchvision's ``TenCrop`` order: top-left, top-right, bottom-left, bottom-right,
    centre, then mirrored). ``TenCrop`` applied to the whole resized image instead would reach further out along the
    long side."""
    x = resize_short(data, aug.test_short)
    square = _crops(x, aug.test_short)[4]
    return _crops(square, aug.crop) + _crops(square.flip(2), aug.crop)


def _crops(x: torch.Tensor, c: int) -> list[torch.Tensor]:
    h, w = x.shape[1:]
    top, left = round((h - c) / 2), round((w - c) / 2)  # torchvision's CenterCrop rounding
    corners = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), (top, left)]
    return [x[:, y : y + c, x0 : x0 + c] for y, x0 in corners]


def multi_scale_views(data: bytes, scales: tuple[int, ...], flip: bool = True) -> list[torch.Tensor]:
    """The whole image at each shorter side in ``scales`` (and each mirrored, if ``flip``), for fully-convolutional
    testing: the views differ in size, so they go through the network one image at a time."""
    views = []
    for s in scales:
        x = resize_short(data, s)
        views += [x, x.flip(2)] if flip else [x]
    return views
