"""The paper's own numbers, in one place, so that tables and reports can print them beside ours.

He, Zhang, Ren, Sun. *Deep Residual Learning for Image Recognition*, CVPR 2016 (arXiv:1512.03385), and for the
pre-activation units He et al. *Identity Mappings in Deep Residual Networks*, ECCV 2016 (arXiv:1603.05027).
Nothing here is measured by reslab: these are citations.
"""

# Table 6: CIFAR-10 6n+2 ResNets (option A), parameters in millions and test error in %.
CIFAR_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}
CIFAR_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}
# Table 6 footnote: ResNet-110 "best (mean+-std)" over 5 runs.
CIFAR_RESNET110_MEAN_STD = (6.61, 0.16)

# Not the paper's: akamaster/pytorch_resnet_cifar10's README, the most used reimplementation of Table 6 (official
# CIFAR-10 images, the paper's recipe, each net's best epoch chosen on the test set). Shown beside Table 6.
AKAMASTER_TEST_ERROR = {20: 8.27, 32: 7.37, 44: 6.90, 56: 6.61, 110: 6.32}

# Table 1: ImageNet multiply-adds ("FLOPs") in billions at 224x224, stride-2 on the bottleneck's first 1x1.
IMAGENET_GMACS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}

# Sec. 3.3: "Our 34-layer baseline has 3.6 billion FLOPs (multiply-adds), which is only 18% of VGG-19 (19.6 billion
# FLOPs)". The paper gives no figure for VGG-16.
VGG19_GMACS = 19.6

# Tables 2 and 3: ImageNet validation top-1 error (%), 10-crop testing (VGG-16: Table 3's "VGG-16 [41]" row).
IMAGENET_TOP1_10CROP = {
    "vgg16": 28.07,
    "plain18": 27.94,
    "plain34": 28.54,
    "resnet18": 27.88,
    "resnet34_A": 25.03,
    "resnet34_B": 24.52,
    "resnet34_C": 24.19,
    "resnet50": 22.85,
    "resnet101": 21.75,
    "resnet152": 21.43,
}

# Identity Mappings (2016), CIFAR-10: pre-activation bottleneck nets, parameters (M) and test error (%).
PREACT_PARAMS_M = {164: 1.7, 1001: 10.2}
PREACT_TEST_ERROR = {164: 5.46, 1001: 4.92}

# Table 8 (detection, COCO val): mAP@[.5,.95] and mAP@.5 of the baseline Faster R-CNN (Sec. 4.3).
COCO_MAP = {"vgg16": 21.2, "resnet101": 27.2}
COCO_MAP50 = {"vgg16": 41.5, "resnet101": 48.4}
