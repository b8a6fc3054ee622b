"""The tasks the training engine runs, registered by name: each makes the `reslab.engine.parts.TaskParts` of a run
from its `TrainConfig` (model, data, loss and evaluation); the engine runs ``TASKS[config.task]`` and names none.
The names are declared once, light, in `reslab.choices.TASKS` (what a config may say)."""

from reslab.choices import TASKS as NAMES
from reslab.engine.parts import MakeParts
from reslab.tasks.classification_run import classification_parts
from reslab.tasks.detection import detection_parts

TASKS: dict[str, MakeParts] = {"classification": classification_parts, "detection": detection_parts}
assert tuple(TASKS) == NAMES, "reslab.choices.TASKS lists the registered tasks"

__all__ = ["TASKS"]
