#!/bin/bash
# After the chain has written degradation, responses and depth: their reports again with main's code, signals (Sec. 4.1,
# from the same runs, trains nothing), the scorecard so far, and copies into the repository's docs/results/fast/.
# SEEDS=2 once every second seed has finished (with fewer, `--seeds 2` would train the missing runs first).
set -eu
cd /work/main
R=".venv/bin/python -m reslab.cli reproduce"
D=../shared/data/cifar10-jpeg.tar
O=/work/reslab-runs/fast
export OMP_NUM_THREADS=1
SEEDS=${SEEDS:-1}
$R degradation --budget fast --seeds $SEEDS --data $D --out $O --quiet
$R responses --budget fast --seeds $SEEDS --data $D --out $O --quiet
$R depth --budget fast --seeds $SEEDS --data $D --out $O --quiet
$R table1 --budget fast --out $O --quiet
$R signals --budget fast --data $D --out $O --quiet
$R all --budget fast --out $O --scorecard-only
for e in degradation responses depth table1 signals; do
  rm -rf docs/results/fast/$e; cp -r $O/$e docs/results/fast/$e
done
cp $O/README.md docs/results/fast/scorecard.md; cp $O/scorecard.json docs/results/fast/scorecard.json
.venv/bin/python -m reslab.cli runs $O/runs/* > docs/results/fast/runs.md
echo finished
