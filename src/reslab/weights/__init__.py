"""Trained weights at the bottom of reslab: every read and write of checkpoints, state dicts and safetensors files,
the shipped weights' manifest, other projects' formats and torchvision's weights, and the `TrainedModel` record.
Nothing here builds a network (`reslab.models.trained` does)."""
