#!/usr/bin/env bash
# Session 16 (2026-12-04): finish plain-44 seed 1 with the worktree that started it (same code as its first
# 3724 iterations), then Fig. 6 with two seeds and the scorecard with main's code (no training left).
set -u
D=/work/shared/data/cifar10-jpeg.tar
O=/work/reslab-runs/fast
echo "=== $(date -u +%FT%TZ) PRIORITY"
(cd /work/reslab-chain && PYTHONPATH=/work/reslab-chain/src /work/main/.venv/bin/python /work/reslab-runs/seeds-priority.py $D $O) \
  || { echo "=== failed: PRIORITY ($?)"; exit 1; }
cd /work/main
R=".venv/bin/python -m reslab.cli reproduce"
echo "=== $(date -u +%FT%TZ) degradation --seeds 2"
$R degradation --budget fast --seeds 2 --data $D --out $O --quiet || { echo "=== failed: degradation ($?)"; exit 1; }
echo "=== $(date -u +%FT%TZ) scorecard"
$R all --budget fast --out $O --scorecard-only || { echo "=== failed: scorecard ($?)"; exit 1; }
echo "=== $(date -u +%FT%TZ) done"
