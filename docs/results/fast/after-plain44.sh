#!/bin/bash
# Once plain-44 seed 1 has finished: stop chain-fast4.sh before its report steps (its worktree's code predates the
# paired test-set margins), then Fig. 6 with two seeds with main's code (no training), the scorecard, copies.
set -eu
while [ ! -f /work/reslab-runs/fast/runs/plain44-s1/summary.json ]; do sleep 15; done
sleep 10
kill -- -25756 2>/dev/null || true
echo "=== $(date -u +%FT%TZ) plain44-s1 finished; chain stopped"
cd /work/main
R=".venv/bin/python -m reslab.cli reproduce"
O=/work/reslab-runs/fast
$R degradation --budget fast --seeds 2 --data ../shared/data/cifar10-jpeg.tar --out $O --quiet
$R all --budget fast --out $O --scorecard-only
echo "=== $(date -u +%FT%TZ) done"
