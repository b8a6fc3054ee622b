"""A tiny ImageFolder tar for the detection tests: flat-colour 32x32 images, so a pasted object is easy to find."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"blue": (20, 20, 220), "green": (20, 220, 20), "red": (220, 20, 20)}


def write_colour_tar(path: Path, per_class: int) -> Path:
    """train/ and test/ with ``per_class`` PNGs of each of the three colours."""
    with tarfile.open(path, "w") as tar:
        for split in ("train", "test"):
            for cls, colour in COLOURS.items():
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(np.full((32, 32, 3), colour, dtype=np.uint8)).save(buf, "PNG")
                    info = tarfile.TarInfo(f"{split}/{cls}/{i}.png")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


@pytest.fixture
def tiny_tar(tmp_path) -> Path:
    return write_colour_tar(tmp_path / "tiny.tar", per_class=4)


@pytest.fixture(scope="session")
def colour_tar_maker():
    """`write_colour_tar` for module- or session-scoped fixtures."""
    return write_colour_tar
