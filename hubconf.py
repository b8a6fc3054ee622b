"""torch.hub entry points: one per registered reslab model (`reslab models` lists them).

    model = torch.hub.load("PATH/TO/reslab", "resnet56", source="local", pretrained=True)
    model = torch.hub.load("PATH/TO/reslab", "resnet50", source="local", num_classes=5)

Each entry takes ``pretrained`` (the weights reslab ships; a one-line error names the models that have them),
``weights`` (a checkpoint, run folder, safetensors or state-dict file) and the model's keyword arguments, exactly as
``reslab.create_model``.
"""

import os as _os
import sys as _sys

# This checkout's package is found even where reslab is not installed (torch.hub imports this file by path).
_sys.path.insert(0, _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "src"))

from reslab.models import create_model as _create_model
from reslab.models import list_models as _list_models
from reslab.models import model_spec as _model_spec

dependencies = ["torch", "torchvision", "numpy", "PIL", "simplejpeg", "safetensors"]


def _entry(name):
    def entry(pretrained=False, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"reslab {name}: {_model_spec(name).doc or name}. Arguments as reslab.create_model."
    return entry


globals().update({_name: _entry(_name) for _name in _list_models()})
