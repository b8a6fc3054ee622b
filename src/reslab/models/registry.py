"""One registry, one way in (timm-style): ``create_model(name, **kwargs)`` and ``list_models(pattern)``.

A registered model is data: a builder function plus the keyword arguments that make it that model
(``"resnet56" -> cifar_resnet(depth=56)``), plus what the paper says about it, for tables and tests.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.errors import ModelError
from reslab.models.features import FeatureNet
from reslab.models.resnet import ResNet
from reslab.weights.shipped import shipped_file
from reslab.weights.state import ForeignWeightsWarning, fit_weights, read_weights
from reslab.weights.tensorfile import read_tensorfile
from reslab.weights.torchvision import MODEL_KWARGS, is_torchvision_ref
from reslab.weights.torchvision import parse as parse_torchvision


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    defaults: dict[str, Any]
    family: str  # "cifar" or "imagenet": decides the default input size
    depth: int
    doc: str = ""
    paper: dict[str, float] = field(default_factory=dict)  # e.g. {"params_m": 0.27} or {"gmacs": 3.8}

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (3, INPUT_SIDE[self.family], INPUT_SIDE[self.family])


INPUT_SIDE = {"cifar": 32, "imagenet": 224}  # each family's usual input side: CIFAR's images, ImageNet's crop


_REGISTRY: dict[str, ModelSpec] = {}
_BUILDERS: dict[str, tuple[Callable[..., nn.Module], str]] = {}  # name -> (builder, family)


def register_builder(name: str, builder: Callable[..., nn.Module], *, family: str) -> None:
    """A generic builder reachable by name with all its keywords, e.g. ``create_model("cifar_resnet", depth=74)``."""
    _BUILDERS[name] = (builder, family)


def register_model(name: str, builder: Callable[..., nn.Module], *, family: str, doc: str = "",
                   paper: dict[str, float] | None = None, **defaults: Any) -> None:  # fmt: skip
    """Register ``name`` as ``builder(**defaults)``; ``defaults`` must include the ``depth``."""
    if name in _REGISTRY or name in _BUILDERS:
        raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = ModelSpec(name, builder, defaults, family, defaults["depth"], doc, paper or {})


def _ensure_loaded() -> None:
    # The family modules register themselves on import; importing here avoids an import cycle.
    from reslab.models import cifar, imagenet  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names (shell-style ``pattern`` such as ``"plain*"``), in registration order."""
    _ensure_loaded()
    names = list(_REGISTRY)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def model_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ModelError(unknown_model(name))
    return _REGISTRY[name]


def is_model_name(name: str) -> bool:
    """Whether ``create_model`` knows ``name`` (a registered model or a generic builder)."""
    _ensure_loaded()
    return name in _REGISTRY or name in _BUILDERS


def create_model(name: str, *, pretrained: bool = False, weights: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model (``resnet56``) or a generic family (``cifar_resnet``, ``imagenet_resnet``).

    Keyword arguments override the registered defaults, e.g. ``create_model("resnet34", shortcut="A")``.
    ``features_only=True`` returns the network's stem and stage outputs instead (`reslab.models.features`: the
    indices in ``out_indices``, their channels and strides in ``.feature_info``), with any weights loaded first.
    ``pretrained=True`` loads the weights reslab ships for ``name`` (`reslab models` marks them; nothing is
    downloaded). ``weights="torchvision:IMAGENET1K_V2"`` (or ``"torchvision:resnet50"``, its default) loads
    torchvision's ImageNet weights from torchvision's cache (`reslab.models.torchvision_weights`), built with
    ``stride_in_1x1=False``. ``weights=PATH`` loads a reslab checkpoint or run folder, a safetensors file, or a
    state dict saved with ``torch.save`` (DataParallel's ``module.`` prefix is removed); without ``num_classes`` the
    classifier takes its size from the file. torchvision's ResNet weights put the bottleneck's stride on the 3x3
    conv (v1.5): build those with ``stride_in_1x1=False``, since the shapes cannot tell the two apart.
    """
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    if features_only or out_indices is not None:
        if not features_only:
            raise ModelError("out_indices chooses the feature maps of features_only=True")
        model = create_model(name, pretrained=pretrained, weights=weights, **kwargs)
        if not isinstance(model, ResNet):
            raise ModelError(f"{name} has no stages to return (features_only is for the ResNet family)")
        return FeatureNet(model, out_indices)
    if pretrained or weights is not None:
        return _with_weights(name, pretrained, weights, kwargs)
    builder, args = resolve(name, **kwargs)
    try:
        return builder(**args)
    except TypeError as e:  # an unknown keyword: the user's mistake, in one line
        if "unexpected keyword argument" not in str(e):
            raise
        raise ModelError(f"{name}: {str(e).split('() ', 1)[-1]}") from e


def resolve(name: str, **kwargs: Any) -> tuple[Callable[..., nn.Module], dict[str, Any]]:
    """The builder and the full keyword arguments ``create_model(name, **kwargs)`` calls: two names build the same
    architecture exactly when these agree (``resnet20`` and ``cifar_resnet(depth=20)`` do; ``plain20`` does not)."""
    _ensure_loaded()
    if name in _BUILDERS:
        builder, registered = _BUILDERS[name][0], {}
    else:
        spec = model_spec(name)
        builder, registered = spec.builder, spec.defaults
    defaults = {**_signature_defaults(builder), **registered}
    args = {**defaults, **kwargs}
    # A plain unit builds no shortcut (reslab.models.blocks): another option there would be accepted and do nothing
    if args.get("mode") == "plain" and args.get("shortcut") != defaults.get("shortcut"):
        raise ModelError(f"shortcut={args['shortcut']!r}: {name} is a plain net, without shortcuts (Sec. 4.1); the "
                         "options A/B/C are for the residual nets")  # fmt: skip
    return builder, args


def _signature_defaults(builder: Callable[..., nn.Module]) -> dict[str, Any]:
    """The builder's own keyword defaults, so that a name given a default explicitly resolves like one without."""
    return {k: p.default for k, p in inspect.signature(builder).parameters.items()
            if p.default is not inspect.Parameter.empty}  # fmt: skip


def _with_weights(name: str, pretrained: bool, weights: str | Path | None, kwargs: dict[str, Any]) -> nn.Module:
    if pretrained and weights is not None:
        raise ModelError("give pretrained=True or weights=PATH, not both")
    if pretrained:
        if not is_model_name(name):
            raise ModelError(unknown_model(name))
        if kwargs:
            raise ModelError(f"{name}'s shipped weights fix its architecture; got keywords {', '.join(kwargs)}")
        file = shipped_file(name)
        found = read_tensorfile(file)
        model = create_model(found.arch.name, num_classes=len(found.classes), **found.arch.kwargs)
        return fit_weights(model, found.state, file)
    if is_torchvision_ref(weights):
        tv = parse_torchvision(str(weights), name)
        if kwargs.get("stride_in_1x1", False):
            raise ModelError(f"{tv.ref} put the bottleneck's stride on the 3x3 conv: stride_in_1x1=True would compute "
                             "something else with the same keys")  # fmt: skip
        state = tv.state_dict()
        classes = state["fc.weight"].shape[0] if "fc.weight" in state else len(tv.classes)
        kwargs = {**MODEL_KWARGS, "num_classes": classes, **kwargs}
        return fit_weights(create_model(name, **kwargs), state, tv.file)
    found = read_weights(weights)
    state = found.state
    if found.foreign is not None:  # built as its project built it (e.g. option A's zeros placed as theirs)
        warnings.warn(found.foreign.note(weights) + " (reslab's own preprocessing does not apply: normalise so)",
                      ForeignWeightsWarning, stacklevel=3)  # fmt: skip
        kwargs = {**found.foreign.model_kwargs, **kwargs}
    if "num_classes" not in kwargs and isinstance(state.get("fc.weight"), torch.Tensor):
        kwargs = {**kwargs, "num_classes": state["fc.weight"].shape[0]}
    if found.config is not None:
        check_architecture(name, kwargs, found.config, weights)
    return fit_weights(create_model(name, **kwargs), state, weights)


def check_architecture(name: str, kwargs: dict[str, Any], config: dict[str, Any], source: object) -> None:
    """Refuse weights whose file records another architecture than ``name(**kwargs)``, though the keys fit (option
    A's zero placement, the bottleneck's stride, plain vs residual: same keys, another function)."""
    theirs = config.get("model")
    if not isinstance(theirs, str) or not is_model_name(theirs):
        return
    their_kwargs = dict(config.get("model_kwargs") or {})
    mine_builder, mine = resolve(name, **kwargs)
    their_builder, their_args = resolve(theirs, **their_kwargs)
    mine.pop("num_classes", None)
    their_args.pop("num_classes", None)
    if mine_builder is not their_builder:
        return  # another family: the keys will not fit, and fit_weights says so
    diff = next((k for k in sorted(set(mine) | set(their_args)) if mine.get(k) != their_args.get(k)), None)
    if diff is not None:

        def show(args: dict[str, Any]) -> str:
            return f"{diff}={args[diff]!r}" if diff in args else f"the default {diff}"

        raise ModelError(f"the weights in {source} were trained as {theirs} with {show(their_args)}; {name} here has "
                         f"{show(mine)}: build it with {show(their_args)} (the keys would fit, but the network would "
                         "compute something else)")  # fmt: skip


def family_and_depth(name: str, **kwargs: Any) -> tuple[str, int]:
    """The family ("cifar" or "imagenet") and depth of what ``create_model(name, **kwargs)`` builds."""
    _ensure_loaded()
    if name in _BUILDERS:
        builder, family = _BUILDERS[name]
        depth = kwargs.get("depth", inspect.signature(builder).parameters["depth"].default)
        if isinstance(depth, bool) or not isinstance(depth, int):  # the builder's own rule (6n+2, Table 1) comes later
            raise ModelError(f"{name}: depth must be an integer, got {depth!r}")
        return family, depth
    spec = model_spec(name)
    return spec.family, spec.depth


def unknown_model(name: str) -> str:
    """The one-line error for a name `create_model` does not know, with the closest names."""
    close = difflib.get_close_matches(name, [*_REGISTRY, *_BUILDERS], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `reslab models` lists them"
    return f"unknown model {name!r}{hint}"
