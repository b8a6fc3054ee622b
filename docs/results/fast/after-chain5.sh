#!/usr/bin/env bash
# Session 16 (2026-12-04): once chain-fast5.sh is done (Fig. 6 with two seeds), issue #22's item 4 as CPU time allows,
# with main's code: construction (one new run: the constructed plain-56 trained further), then single-layer units
# at 20 and 56 layers (two new runs), then the scorecard. Rerun to resume.
set -u
while ! grep -q "^=== .* done$" /work/reslab-runs/chain-fast.log; do sleep 20; done
cd /work/main
D=/work/shared/data/cifar10-jpeg.tar
O=/work/reslab-runs/fast
R=".venv/bin/python -m reslab.cli reproduce"
for step in construction single-layer; do
  echo "=== $(date -u +%FT%TZ) $step"
  $R $step --budget fast --data $D --out $O --quiet || { echo "=== failed: $step ($?)"; exit 1; }
  $R all --budget fast --out $O --scorecard-only || { echo "=== failed: scorecard ($?)"; exit 1; }
done
echo "=== $(date -u +%FT%TZ) all done"
