#!/bin/bash
# Once chain-fast4.sh has finished every second seed: Fig. 6, Table 6, Fig. 7 with two seeds (finish.sh, no training),
# then the construction argument at the fast budget (one plain-56 run from the constructed net), the scorecard again.
set -eu
while pgrep -f chain-fast4.sh > /dev/null; do sleep 30; done
tail -1 /work/reslab-runs/chain-fast.log | grep -q "done" || { echo "=== chain did not finish"; exit 1; }
echo "=== $(date -u +%FT%TZ) chain finished"
cd /work/main
SEEDS=2 bash docs/results/fast/finish.sh
echo "=== $(date -u +%FT%TZ) finish.sh done"
# training: all cores (finish.sh limits its own evaluations to one thread)
R=".venv/bin/python -m reslab.cli reproduce"
O=/work/reslab-runs/fast
$R construction --budget fast --data ../shared/data/cifar10-jpeg.tar --out $O --quiet
$R all --budget fast --out $O --scorecard-only
echo "=== $(date -u +%FT%TZ) done"
