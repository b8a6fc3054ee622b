"""Faster R-CNN with reslab's networks as backbones, in the paper's "C4" design (Sec. 4.3, Appendix A) and with FPN.

The paper (Appendix A) builds Faster R-CNN on ResNet as follows, and so does ``fasterrcnn_<net>_c4``:

* the stem and every stage but the last (conv1 ... conv4_x for the ImageNet nets: stride 16) are computed once per
  image and shared by the RPN and the detector;
* the RPN and RoI pooling read that last shared map (conv4_x);
* the last stage (conv5_x) runs on each region as the box head, its first unit strided (a 14x14 RoI becomes 7x7),
  followed by global average pooling and the box classifier and regressor;
* BN layers are frozen: their statistics and affine parameters stay those of the classification network
  (``torchvision.ops.misc.FrozenBatchNorm2d``), since detection batches are too small for BN statistics.

Everything else comes from torchvision's detection package (anchors, RPN, box coding, NMS, RoIAlign, losses), as
the issue asks. The numbers chosen here, and where they differ from the paper:

* RoI features: RoIAlign to 14x14 (``MultiScaleRoIAlign``), as detectron2's and torchvision's C4 models do; the
  paper used RoI pooling (quantised bins), which RoIAlign superseded (Mask R-CNN, 2017).
* Image size: shorter side 600 and longer side at most 1000 (Faster R-CNN's and the paper's single-scale setting),
  ``min_size``/``max_size``.
* Anchors: sizes 32, 64, 128, 256, 512 and aspect ratios 0.5, 1, 2 at every position of the stride-16 map
  (detectron2's C4 setting; Faster R-CNN used 128-512 on PASCAL VOC and added smaller ones for COCO's small objects).
  Networks whose shared map has another stride (the CIFAR nets: stride 2) take sizes scaled with it.
* Proposals: 2000 after NMS in training, 300 at test (the paper's Sec. 4.3: "300 proposals"); RPN NMS at IoU 0.7,
  at test over the 6000 top-scoring anchors (Faster R-CNN's number; torchvision's default is 1000).
* RoIs sampled per image in training: 128 (``box_batch_size_per_image``; Fast R-CNN sampled 64 per image in
  mini-batches of 2, detectron2 512): a bound that keeps a CPU step short.
* Frozen weights: with ``trainable_stages=3`` (the default, torchvision's ``trainable_layers=3``) the top three of
  the network's parts (stem, stage 1, ...) train: for the ImageNet nets (four stages) the stem and conv2_x stay
  fixed, as detectron2's ``FREEZE_AT=2``; for the CIFAR nets (three stages) the stem only. The paper does not say
  which layers it fixed.
* Input normalisation: the per-channel mean (and std) of the classification network's training data, so the
  backbone sees the pixel statistics it was trained on: ImageNet's for random or ImageNet weights, the CIFAR mean
  image averaged over its pixels for a CIFAR-trained backbone.

``fasterrcnn_<net>_fpn`` is torchvision's FPN design on the same backbones (every stage's output plus a max-pooled
level, two-layer MLP head) with torchvision's RPN settings (1000 anchors per level before NMS at test) and the
proposal and RoI numbers above, for comparison with the design most users know. Its anchors are 8x each level's
stride (one size per level, the three ratios): 32-512 on the ImageNet nets' P2-P6, as torchvision's; 8-64 on the
CIFAR nets' levels at strides 1-8.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from reslab.choices import DETECTOR_DESIGNS, DETECTOR_MAX_SIZE, DETECTOR_MIN_SIZE, SHIPPED
from reslab.data.presets import IMAGENET_MEAN, IMAGENET_STD
from reslab.errors import ModelError
from reslab.models import ResNet, create_model
from reslab.models.features import FeatureInfo, features
from reslab.models.parts import freeze_batchnorm
from reslab.models.parts import parts as resnet_parts
from reslab.models.registry import is_model_name, resolve
from reslab.models.trained import load_trained
from reslab.weights.state import recorded_preprocessing
from reslab.weights.torchvision import is_torchvision_ref

DESIGNS = DETECTOR_DESIGNS
ANCHOR_SIZES = (32, 64, 128, 256, 512)  # at stride 16 (the ImageNet nets' conv4_x)
ASPECT_RATIOS = (0.5, 1.0, 2.0)


# torchvision's FasterRCNN keywords (its **kwargs would swallow a misspelt one: the transform takes any)
_FASTER_RCNN_KEYWORDS = {n for n, p in inspect.signature(FasterRCNN.__init__).parameters.items()
                         if p.kind is not p.VAR_KEYWORD} - {"self", "backbone", "num_classes"}  # fmt: skip


def parse_name(name: str) -> tuple[str, str]:
    """``fasterrcnn_<backbone>_<design>`` -> (backbone, design), checked: one line on a bad name."""
    head, _, design = name.rpartition("_")
    if not head.startswith("fasterrcnn_") or design not in DESIGNS:
        raise ModelError(f"unknown detector {name!r}: use fasterrcnn_<backbone>_c4 or fasterrcnn_<backbone>_fpn, "
                         "e.g. fasterrcnn_resnet50_c4")  # fmt: skip
    backbone = head[len("fasterrcnn_") :]
    if not is_model_name(backbone):
        raise ModelError(f"unknown backbone {backbone!r} in {name!r}; `reslab models` lists them")
    return backbone, design


class C4Trunk(nn.Module):
    """The shared part: stem and every stage but the last; ``out_channels`` and ``stride`` say what it yields."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.stages = nn.Sequential(*[getattr(net, n) for n in net.stage_names[:-1]])
        self.out_channels = _stage_channels(net)[-2]
        self.stride = _stride(net, len(net.stage_names) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class C4Head(nn.Module):
    """The box head: the last stage on each RoI (its first unit strided), then global average pooling."""

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.stage = getattr(net, net.stage_names[-1])
        self.final_bn = net.final_bn  # the pre-activation nets' last BN + ReLU (an identity for the others)
        self.out_channels = _stage_channels(net)[-1]

    def forward(self, rois: torch.Tensor) -> torch.Tensor:
        return self.final_bn(self.stage(rois)).mean((2, 3))


def create_detector(name: str, num_classes: int, *, backbone_weights: str | Path | None = None,
                    backbone_kwargs: dict[str, Any] | None = None, trainable_stages: int = 3,
                    min_size: int = DETECTOR_MIN_SIZE, max_size: int = DETECTOR_MAX_SIZE,
                    anchor_sizes: tuple[int, ...] | None = None, proposals_test: int = 300,
                    rois_per_image: int = 128, image_mean: tuple[float, ...] | None = None,
                    image_std: tuple[float, ...] | None = None, **kwargs: Any) -> FasterRCNN:  # fmt: skip
    """A Faster R-CNN for ``num_classes`` object classes (background is added), e.g.
    ``create_detector("fasterrcnn_resnet50_c4", num_classes=80)``; see the module doc for every default.

    ``backbone_weights``: a reslab checkpoint, run folder, safetensors or state-dict file, or a model name with
    shipped weights, or torchvision's (``torchvision:resnet50``; as ``reslab train --init``); the classifier is
    dropped. ``backbone_kwargs``: the backbone's model keywords, as the weights were trained (``reslab detect train``
    records those of its ``--init``: torchvision's ``stride_in_1x1=False``, a run's ``shortcut``). ``trainable_stages``:
    how many of the network's parts train, counted from the top (stem, stage 1, ...): 0 freezes all,
    ``len(stages) + 1`` none. Other keywords go to torchvision's ``FasterRCNN`` (one it does not take is refused).
    """
    backbone, design = parse_name(name)
    unknown = sorted(set(kwargs) - _FASTER_RCNN_KEYWORDS)
    if unknown:
        raise ModelError(f"create_detector has no keyword {unknown[0]!r} (its own, or torchvision FasterRCNN's)")
    if min_size > max_size:  # torchvision's resize would cap the shorter side at max_size: min_size would do nothing
        raise ModelError(f"min_size ({min_size}) must not exceed max_size ({max_size})")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer (object classes, without background), got "
                         f"{num_classes!r}")  # fmt: skip
    net, mean, std = _classifier(backbone, backbone_weights, dict(backbone_kwargs or {}))
    if not isinstance(net, ResNet):
        raise ModelError(f"{backbone} is not a reslab ResNet; detection needs its stem and stages")
    parts = [nn.ModuleList(modules) for modules in resnet_parts(net).values()]  # stem, then the stages
    if not 0 <= trainable_stages <= len(parts):
        raise ModelError(f"trainable_stages must be in [0, {len(parts)}] for {backbone}, got {trainable_stages}")
    for part in parts[: len(parts) - trainable_stages]:
        part.requires_grad_(False)
    freeze_batchnorm(net)
    common = dict(min_size=min_size, max_size=max_size, image_mean=list(image_mean or mean),
                  image_std=list(image_std or std), rpn_post_nms_top_n_test=proposals_test,
                  box_batch_size_per_image=rois_per_image)  # fmt: skip
    if design == "c4":
        trunk, head = C4Trunk(net), C4Head(net)
        sizes = anchor_sizes or tuple(max(4, round(s * trunk.stride / 16)) for s in ANCHOR_SIZES)
        anchors = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ASPECT_RATIOS,))
        return FasterRCNN(trunk, num_classes=None, rpn_anchor_generator=anchors,
                          box_roi_pool=MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=0), box_head=head,
                          box_predictor=FastRCNNPredictor(head.out_channels, num_classes + 1),
                          **{**common, "rpn_pre_nms_top_n_test": 6000, **kwargs})  # fmt: skip
    channels = _stage_channels(net)
    fpn = BackboneWithFPN(net, {n: str(i) for i, n in enumerate(net.stage_names)}, channels, 256,
                          extra_blocks=LastLevelMaxPool())  # fmt: skip
    levels = len(channels) + 1  # every stage's output and the max-pooled one above the last
    sizes = anchor_sizes or tuple(8 * _stride(net, 1) * 2**i for i in range(levels))
    anchors = AnchorGenerator(sizes=tuple((s,) for s in sizes), aspect_ratios=(ASPECT_RATIOS,) * levels)
    return FasterRCNN(fpn, num_classes=num_classes + 1, rpn_anchor_generator=anchors, **{**common, **kwargs})


def _classifier(backbone: str, weights: str | Path | None,
                kwargs: dict[str, Any]) -> tuple[nn.Module, tuple, tuple]:  # fmt: skip
    """The classification network (with ``weights`` if given) and the input statistics it was trained with."""
    if weights is None:
        return create_model(backbone, **kwargs), IMAGENET_MEAN, IMAGENET_STD
    ref = str(weights)
    ref = ref[len(SHIPPED) :] if ref.startswith(SHIPPED) else ref  # as a run's config records a shipped name
    if not (is_torchvision_ref(ref) or is_model_name(ref)) and recorded_preprocessing(ref) is None:
        # plain weights (a bare state dict): they record no architecture or statistics; ImageNet's are assumed
        return create_model(backbone, weights=ref, **kwargs), IMAGENET_MEAN, IMAGENET_STD
    loaded = load_trained(ref)
    if _architecture(loaded.arch.name, loaded.arch.kwargs) != _architecture(backbone, kwargs):
        trained = _described(loaded.arch.name, loaded.arch.kwargs)
        raise ModelError(f"backbone weights {weights} were trained as {trained}; this detector's backbone is "
                         f"{_described(backbone, kwargs)}")  # fmt: skip
    pre = loaded.preprocessing
    mean = pre.mean.float().mean((1, 2)) if pre.mean is not None else torch.tensor(IMAGENET_MEAN)
    std = pre.std
    std = std.flatten() if isinstance(std, torch.Tensor) else torch.ones(3)
    return loaded.model, tuple(mean.tolist()), tuple(std.tolist())


def _described(name: str, kwargs: dict[str, Any]) -> str:
    return name + (f" with {', '.join(f'{k}={v!r}' for k, v in sorted(kwargs.items()))}" if kwargs else "")


def _architecture(name: str, kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """What a (name, keywords) pair builds, the classifier's size aside: the same for ``resnet20`` and
    ``cifar_resnet(depth=20)``, different for ``plain20`` (whose weights even have ResNet-20's shapes)."""
    builder, args = resolve(name, **kwargs)
    return builder, {k: v for k, v in args.items() if k != "num_classes"}


def _stage_channels(net: ResNet) -> list[int]:
    """Output channels of each stage (`reslab.models.features`: the same feature maps ``features_only`` returns)."""
    return FeatureInfo(features(net)[1:]).channels()


def _stride(net: ResNet, stages: int) -> int:
    """The total stride after the stem and the first ``stages`` stages (`reslab.models.features`)."""
    return features(net)[stages].reduction
