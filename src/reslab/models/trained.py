"""The one loader of trained networks: ``load_trained(ref)`` takes what users hold and returns a `TrainedModel`
(`reslab.weights.trained`), the network built and in eval mode:

* a reslab checkpoint or run folder (`reslab train` wrote it);
* a reslab safetensors file (`reslab export --format safetensors`): the weights, the run's configuration, classes
  and preprocessing, so it rebuilds without anything else;
* the name of a model reslab ships weights for (`reslab.weights.shipped`);
* torchvision's ImageNet weights by name (``torchvision:resnet50``, `reslab.weights.torchvision`), from
  torchvision's cache, with its 1000 class names and its evaluation view (resize, crop, per-channel mean and std);
* a checkpoint in another project's format that reslab recognises (`reslab.weights.peers`): built as that project
  built it, its input normalisation turned into reslab's (the per-channel mean as the mean image, the std folded
  into the stem convolution), said in one warning.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch

from reslab.data.views import preset
from reslab.errors import ModelError, ReslabError
from reslab.models.registry import create_model, is_model_name
from reslab.weights.checkpoint import CHECKPOINT, NotACheckpoint, checkpoint_file, read_checkpoint
from reslab.weights.peers import Foreign
from reslab.weights.shipped import shipped_file
from reslab.weights.state import ForeignWeightsWarning, fit_weights, read_weights
from reslab.weights.tensorfile import TensorFile, read_tensorfile
from reslab.weights.torchvision import MODEL_KWARGS, is_torchvision_ref
from reslab.weights.torchvision import parse as parse_torchvision
from reslab.weights.trained import Arch, Preprocessing, TrainedModel

# The augmentation torchvision's ImageNet weights were trained with (`reslab.data.presets`): their evaluation view
_TORCHVISION_AUGMENTATION = "imagenet-torchvision"


def load_trained(ref: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """The network ``ref`` names, in eval mode on ``device``: a checkpoint, a run folder, a reslab safetensors file,
    the name of a model with shipped weights, torchvision's weights (``torchvision:resnet50``), or a recognised
    foreign checkpoint."""
    if is_torchvision_ref(ref):
        trained = _torchvision(str(ref))
    else:
        path = Path(ref)
        if (path.is_dir() and (path / CHECKPOINT).is_file()) or (path.is_file() and path.suffix != ".safetensors"):
            trained = _checkpoint(path)
        elif path.is_file():
            trained = load_tensorfile(path)
        elif isinstance(ref, str) and is_model_name(ref):
            trained = load_tensorfile(shipped_file(ref))
        elif path.is_dir():
            raise ModelError(f"{path} holds no {CHECKPOINT}: not a reslab run folder")
        else:
            raise ModelError(f"no such file, run folder or model name: {ref}")
    trained.model.to(device).eval()
    return trained


def load_tensorfile(path: str | Path) -> TrainedModel:
    """A reslab safetensors file (`reslab.weights.tensorfile`) as a `TrainedModel`, whatever the file's name."""
    return _built(read_tensorfile(path), Path(path))


def _built(found: TensorFile, source: Path) -> TrainedModel:
    model = create_model(found.arch.name, num_classes=len(found.classes), **found.arch.kwargs)
    fit_weights(model, found.state, source)
    # A file exported from weights trained elsewhere (torchvision's, another project's) records only the architecture
    # in its config: no run trained it here, so the model has no run configuration (`reslab eval` asks for --data).
    run = found.config if "recipe" in found.config else {}
    return TrainedModel(model, found.arch, found.classes, found.preprocessing, found.iteration, source, run)


def _checkpoint(path: Path) -> TrainedModel:
    path = checkpoint_file(path)
    try:
        state = read_checkpoint(path)
    except NotACheckpoint as e:
        foreign = read_weights(path).foreign
        if foreign is None:
            raise ModelError(f"{e}: plain weights carry no classes or preprocessing; load them with "
                             "reslab.create_model(NAME, weights=FILE)") from None  # fmt: skip
        return _foreign(foreign, path)
    config = dict(state["config"])
    if state.get("custom_model"):
        raise ReslabError(f"{path} holds a model passed in from Python ({state['custom_model']}): build it again and "
                          "load the checkpoint's 'model' entry into it")  # fmt: skip
    if not is_model_name(config.get("model", "")):  # a detector (the config's task says), not a classifier
        raise ReslabError(f"{path} is a {config.get('task') or 'detection'} run ({config.get('model')}): use reslab "
                          "detect eval / reslab detect predict")  # fmt: skip
    arch = Arch(config["model"], dict(config.get("model_kwargs") or {}))
    found = TensorFile(state["model"], arch, list(state["classes"]), Preprocessing.from_checkpoint(state),
                       int(state["iteration"]), config)  # fmt: skip
    return _built(found, path)


def _foreign(foreign: Foreign, path: Path) -> TrainedModel:
    """A recognised foreign checkpoint (`reslab.weights.peers`) as a `TrainedModel` that reslab's preprocessing
    feeds correctly: built as its project built it, the per-channel mean as the mean image, the std folded into the
    stem convolution. Says so in one warning."""
    warnings.warn(foreign.note(path), ForeignWeightsWarning, stacklevel=4)
    arch = Arch(foreign.model, dict(foreign.model_kwargs))
    model = create_model(foreign.model, num_classes=len(foreign.classes), **foreign.model_kwargs)
    fit_weights(model, foreign.folded(), path)
    return TrainedModel(model, arch, list(foreign.classes), Preprocessing(foreign.mean_image()), 0, path)


def _torchvision(ref: str) -> TrainedModel:
    """torchvision's weights ``ref``: reslab's network built as torchvision's (``stride_in_1x1=False``), the enum's
    class names, and its evaluation view (shorter side ``resize_size``, centre crop ``crop_size``, per-channel mean
    and std)."""
    tv = parse_torchvision(ref)
    view = tv.view
    model = create_model(tv.model, weights=tv.ref)
    aug = tv.fitted(preset(_TORCHVISION_AUGMENTATION, view["crop"]))
    pre = Preprocessing(torch.tensor(view["mean"]).view(3, 1, 1), torch.tensor(view["std"]).view(3, 1, 1),
                        dataclasses.asdict(aug), source=tv.ref)  # fmt: skip
    return TrainedModel(model, Arch(tv.model, dict(MODEL_KWARGS)), tv.classes, pre, 0, tv.file)
