#!/usr/bin/env bash
# The fast-budget runs of issue #22; rerun to resume (finished runs are skipped). From 2026-12-03 18:10: the second
# seeds in priority order (seeds-priority.py) before the seed-2 reports. From 19:30 (chain-fast4.sh): seed 0 is done.
set -u
cd /work/reslab-chain
export PYTHONPATH=/work/reslab-chain/src
P=/work/main/.venv/bin/python
R="$P -m reslab.cli reproduce"
D=/work/shared/data/cifar10-jpeg.tar
O=/work/reslab-runs/fast
for step in "PRIORITY" "depth --seeds 2" "degradation --seeds 2"; do
  echo "=== $(date -u +%FT%TZ) $step"
  if [ "$step" = PRIORITY ]; then
    $P /work/reslab-runs/seeds-priority.py $D $O || { echo "=== failed: $step ($?)"; exit 1; }
  else
    $R $step --data $D --budget fast --out $O --quiet || { echo "=== failed: $step ($?)"; exit 1; }
  fi
done
echo "=== $(date -u +%FT%TZ) done"
