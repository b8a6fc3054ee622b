#!/bin/bash
# Once ResNet-110 seed 1 has finished: Fig. 7 with two seeds (no training), the scorecard so far, copies into the repo.
set -eu
while [ ! -f /work/reslab-runs/fast/runs/resnet110-s1/summary.json ]; do sleep 30; done
echo "=== $(date -u +%FT%TZ) resnet110-s1 finished"
cd /work/main
export OMP_NUM_THREADS=1
R=".venv/bin/python -m reslab.cli reproduce"
O=/work/reslab-runs/fast
$R responses --budget fast --seeds 2 --data ../shared/data/cifar10-jpeg.tar --out $O --quiet
$R all --budget fast --out $O --scorecard-only
echo "=== $(date -u +%FT%TZ) done"
