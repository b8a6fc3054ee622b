#!/usr/bin/env bash
# The fast-budget runs of issue #22, in priority order; rerun to resume (finished runs are skipped).
# From 2026-12-03 12:50: degradation (plain-32/44, then ResNet-110) before depth, so that plain-32/44 finish in one session.
set -u
cd /work/reslab-chain
export PYTHONPATH=/work/reslab-chain/src
R="/work/main/.venv/bin/python -m reslab.cli reproduce"
D=/work/shared/data/cifar10-jpeg.tar
O=/work/reslab-runs/fast
for step in "degradation --seeds 1" "responses" "depth --seeds 1" "depth --seeds 2" "degradation --seeds 2"; do
  echo "=== $(date -u +%FT%TZ) $step" 
  $R $step --data $D --budget fast --out $O --quiet || { echo "=== failed: $step ($?)"; exit 1; }
done
echo "=== $(date -u +%FT%TZ) done"
