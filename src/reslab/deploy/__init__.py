"""Trained models on new images: loading any trained model (`load_trained`), prediction, export, shipped weights."""

from reslab.deploy.trained import load_trained, read_safetensors, save_safetensors

__all__ = ["load_trained", "read_safetensors", "save_safetensors"]
