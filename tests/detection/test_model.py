"""Faster R-CNN on reslab backbones: the C4 split of Sec. 4.3 / Appendix A, frozen BN, train and eval outputs."""

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from reslab import create_detector, create_model
from reslab.detection.model import C4Head, C4Trunk
from reslab.errors import ModelError


def _targets(n: int) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor([[8.0, 10.0, 60.0, 70.0], [30.0, 5.0, 90.0, 40.0]]), "labels": torch.tensor([1, 3])}
            for _ in range(n)]  # fmt: skip


@pytest.mark.parametrize(
    "name", ["fasterrcnn_resnet18_c4", "fasterrcnn_resnet18_fpn", "fasterrcnn_resnet20_c4", "fasterrcnn_plain20_fpn"]
)
def test_train_gives_the_four_losses_and_eval_gives_boxes(name):
    torch.manual_seed(0)
    model = create_detector(name, num_classes=4, min_size=96, max_size=96)
    images = [torch.rand(3, 96, 96), torch.rand(3, 80, 96)]
    model.train()
    losses = model(images, _targets(2))
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and out[1]["boxes"].shape[1] == 4 and len(out[1]["labels"]) == len(out[1]["scores"])
    assert ((out[0]["labels"] >= 1) & (out[0]["labels"] <= 4)).all()  # 0 is the background


def test_c4_shares_conv1_to_conv4_and_runs_conv5_per_region():
    model = create_detector("fasterrcnn_resnet50_c4", num_classes=2)
    trunk, head = model.backbone, model.roi_heads.box_head
    assert isinstance(trunk, C4Trunk) and isinstance(head, C4Head)
    assert trunk.stride == 16 and trunk.out_channels == 1024  # conv4_x of ResNet-50
    assert trunk(torch.zeros(1, 3, 224, 224)).shape == (1, 1024, 14, 14)
    assert head(torch.zeros(3, 1024, 14, 14)).shape == (3, 2048)  # conv5_x strided on the 14x14 RoIs, then pooled
    assert model.roi_heads.box_predictor.cls_score.out_features == 3  # 2 classes + background
    assert model.rpn._post_nms_top_n["testing"] == 300  # the paper's 300 proposals


@pytest.mark.parametrize(
    ("backbone", "shared", "head"),
    [("resnet18", 256, 512), ("plain34", 256, 512), ("resnet101", 1024, 2048), ("resnet152", 1024, 2048)],
)
def test_every_imagenet_depth_and_the_plain_twins_split_at_conv4(backbone, shared, head):
    model = create_detector(f"fasterrcnn_{backbone}_c4", num_classes=5)
    assert model.backbone.stride == 16 and model.backbone.out_channels == shared
    assert model.roi_heads.box_head.out_channels == head == model.roi_heads.box_predictor.cls_score.in_features
    assert len(model.roi_heads.box_head.stage) == len(create_model(backbone).layer4)  # all of conv5_x


def test_fpn_anchors_are_8x_each_levels_stride_and_keep_torchvisions_rpn_settings():
    imagenet = create_detector("fasterrcnn_resnet18_fpn", num_classes=2)
    assert imagenet.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))  # torchvision's P2-P6
    assert imagenet.rpn._pre_nms_top_n["testing"] == 1000 and imagenet.rpn._post_nms_top_n["testing"] == 300
    cifar = create_detector("fasterrcnn_resnet20_fpn", num_classes=2)
    assert cifar.rpn.anchor_generator.sizes == ((8,), (16,), (32,), (64,))  # strides 1, 2, 4 and the pooled 8
    c4 = create_detector("fasterrcnn_resnet18_c4", num_classes=2)
    assert c4.rpn._pre_nms_top_n["testing"] == 6000  # Faster R-CNN's


def test_bn_is_frozen_everywhere_and_the_lowest_parts_do_not_train():
    model = create_detector("fasterrcnn_resnet18_c4", num_classes=3, min_size=96, max_size=96)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == sum(isinstance(m, nn.BatchNorm2d) for m in create_model("resnet18").modules())
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "bn" in k}
    model.train()
    sum(model([torch.rand(3, 96, 96)], _targets(1)).values()).backward()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)
    trunk = model.backbone
    assert not any(p.requires_grad for p in trunk.stem.parameters())  # stem and layer1: detectron2's FREEZE_AT=2
    assert not any(p.requires_grad for p in trunk.stages[0].parameters())
    assert all(p.requires_grad for p in trunk.stages[1].parameters())


def test_backbone_weights_come_from_a_classification_run(tmp_path):
    from reslab.engine.config import TrainConfig
    from reslab.engine.recipes import get_recipe
    from reslab.engine.run import train
    from reslab.models.trained import load_trained

    run = tmp_path / "run"
    train(TrainConfig(model="resnet20", data="synthetic:256", recipe=get_recipe("paper", iterations=2, batch_size=32),
                      precision="fp32", device="cpu", out=str(run), progress=False, log_every=2))  # fmt: skip
    model = create_detector("fasterrcnn_resnet20_c4", num_classes=2, backbone_weights=run)
    loaded = load_trained(run)
    assert torch.equal(model.backbone.stem[0].weight, loaded.model.conv1.weight)
    expected = loaded.preprocessing.mean.mean((1, 2))
    assert model.transform.image_mean == pytest.approx(expected.tolist()) and model.transform.image_std == [1.0] * 3
    with pytest.raises(ModelError, match="were trained as resnet20; this detector's backbone is resnet56"):
        create_detector("fasterrcnn_resnet56_c4", num_classes=2, backbone_weights=run)
    # plain-20 has exactly ResNet-20's tensors: only the architecture tells them apart
    with pytest.raises(ModelError, match="were trained as resnet20; this detector's backbone is plain20"):
        create_detector("fasterrcnn_plain20_c4", num_classes=2, backbone_weights=run)
    generic = create_detector("fasterrcnn_cifar_resnet_c4", num_classes=2, backbone_weights=run)  # depth 20 too
    assert torch.equal(generic.backbone.stem[0].weight, loaded.model.conv1.weight)
    with pytest.raises(ModelError, match="trained as resnet20; this detector's backbone is resnet20 with shortcut='B'"):
        create_detector("fasterrcnn_resnet20_c4", 2, backbone_weights=run, backbone_kwargs={"shortcut": "B"})
    shipped = create_detector("fasterrcnn_resnet20_c4", num_classes=2, backbone_weights="shipped:resnet20")
    assert torch.equal(shipped.backbone.stem[0].weight, load_trained("resnet20").model.conv1.weight)
    with pytest.raises(ModelError, match="no keyword 'trainable_backbone_layers'"):  # FasterRCNN's **kwargs took it
        create_detector("fasterrcnn_resnet20_c4", num_classes=2, trainable_backbone_layers=5)


def test_boxes_are_decoded_in_fp32_under_bf16_autocast():
    """The backbone runs in the caller's precision; the RPN and RoI heads in fp32, as the model's own forward in
    fp32 computes them (bf16 coordinates above 512 px would be multiples of 4)."""
    from reslab.detection.task import detections

    torch.manual_seed(0)
    model = create_detector("fasterrcnn_resnet18_c4", num_classes=3, min_size=96, max_size=96).eval()
    images = [torch.rand(3, 96, 128)]
    with torch.no_grad():
        expected = model(images)
    found = detections(model, images)
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(found[0][key], expected[0][key])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = detections(model, images)
    assert mixed[0]["boxes"].dtype == torch.float32


def test_both_designs_compute_the_classification_networks_own_features(tmp_path):
    # BN scales of both signs and non-trivial statistics: a stem run out of order (max pool before BN and ReLU)
    # would agree with the network only while every scale is positive.
    torch.manual_seed(0)
    net = create_model("resnet18").eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.normal_()
            m.bias.data.normal_()
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = [net.maxpool(net.relu(net.bn1(net.conv1(x))))]
        for name in net.stage_names:
            feats.append(getattr(net, name)(feats[-1]))
        c4 = create_detector("fasterrcnn_resnet18_c4", num_classes=2, backbone_weights=tmp_path / "weights.pt")
        torch.testing.assert_close(c4.backbone(x), feats[3], rtol=1e-4, atol=1e-4)  # conv4_x
        fpn = create_detector("fasterrcnn_resnet18_fpn", num_classes=2, backbone_weights=tmp_path / "weights.pt")
        body = fpn.backbone.body(x)
        for i in range(4):
            torch.testing.assert_close(body[str(i)], feats[i + 1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: create_detector("fasterrcnn_resnet50", num_classes=2), "use fasterrcnn_<backbone>_c4"),
        (lambda: create_detector("fasterrcnn_resnet51_c4", num_classes=2), "unknown backbone 'resnet51'"),
        (lambda: create_detector("fasterrcnn_resnet18_c4", num_classes=0), "num_classes must be a positive"),
        (lambda: create_detector("fasterrcnn_resnet18_c4", num_classes=2, trainable_stages=9), r"in \[0, 5\]"),
        (
            lambda: create_detector("fasterrcnn_resnet18_c4", num_classes=2, min_size=96, max_size=64),
            r"min_size \(96\) must not exceed max_size \(64\)",
        ),
        (
            lambda: create_detector("fasterrcnn_resnet18_c4", num_classes=2, backbone_weights="/no/such.pt"),
            "weights not found",
        ),
    ],
)
def test_bad_input_is_one_line(call, message):
    with pytest.raises(ModelError, match=message):
        call()
