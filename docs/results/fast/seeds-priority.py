"""Issue #22's second seeds in the order that completes Fig. 6's 20 and 56 pairs and ResNet-110 first; the same run
folders (names and configs) that `reslab reproduce degradation/depth --budget fast --seeds 2` train and then reuse."""
import sys

from reslab.experiments.runner import Runner, RunSpec, get_budget

ORDER = ["resnet20", "plain20", "resnet56", "plain56", "resnet110", "resnet32", "resnet44", "plain32", "plain44"]
runner = Runner(sys.argv[1], sys.argv[2], get_budget("fast"), progress=False)
for name in ORDER:
    runner.run_all([RunSpec(name, 1)])
