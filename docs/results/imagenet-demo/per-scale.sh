#!/usr/bin/env bash
# Why multi-scale lost to 1 crop in the ImageNet demo: each scale alone (whole image and its mirror).
REPO=${REPO:-$(git rev-parse --show-toplevel)}
cd $REPO
export PYTHONPATH=$REPO/src OMP_NUM_THREADS=1
for s in 64 73 110; do  # (137 and 183 not run: see per-scale.txt)
  echo "=== reslab eval /work/reslab-runs/imagenet-demo/run --multi-scale --scales $s --workers 1 --json ($(date -u +%FT%TZ))"
  python -m reslab.cli eval /work/reslab-runs/imagenet-demo/run --multi-scale --scales $s --workers 1 --json | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['views'], d['error'], d['top5_error'], d['n'])"
done
