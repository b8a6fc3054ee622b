"""Weights from files: reslab checkpoints, run folders, plain state dicts (with DDP's ``module.`` prefix)."""

import pytest
import torch

from reslab import ModelError, create_model
from reslab.weights.state import load_weights, read_state_dict


def test_state_dict_files_with_and_without_the_ddp_prefix(tmp_path):
    torch.manual_seed(0)
    source = create_model("resnet20")
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "ddp.pt")
    torch.save({"model": source.state_dict(), "config": {}}, tmp_path / "ckpt.pt")
    for name in ("plain.pt", "ddp.pt", "ckpt.pt"):
        target = load_weights(create_model("resnet20"), tmp_path / name)
        for k, v in source.state_dict().items():
            assert torch.equal(target.state_dict()[k], v), (name, k)


def test_a_mismatch_is_one_line(tmp_path):
    torch.save(create_model("resnet20").state_dict(), tmp_path / "r20.pt")
    with pytest.raises(ModelError, match=r"do not fit this ResNet: missing 'layer1.3.conv1.weight' \(60 missing, 0 "):
        load_weights(create_model("resnet32"), tmp_path / "r20.pt")
    with pytest.raises(ModelError, match=r"'fc.weight' is \[10, 64\] there, \[7, 64\] in the model"):
        load_weights(create_model("resnet20", num_classes=7), tmp_path / "r20.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a weights-only file"):
        read_state_dict(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="weights not found"):
        read_state_dict(tmp_path / "none.pt")
