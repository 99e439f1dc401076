#!/bin/bash
# Alternate the base tree (dfb271c, unpacked first: git archive dfb271c | tar -x -C /tmp/onefill/base)
# and the new one (s21-onefill): benchmarks/profile_fixed.py per implementation, twice each.
# Usage: ab.sh null|wgpu-native|dawn REPS
export XDG_RUNTIME_DIR=/tmp/hal-xdg-$(id -u)
PY=/work/main/.venv/bin/python
impl=$1; reps=$2
for round in 1 2; do
  for tree in base new; do
    dir=/tmp/onefill/base; [ $tree = new ] && dir=/work/wt-onefill
    echo "== $impl $tree $round"
    (cd $dir && $PY benchmarks/profile_fixed.py --implementation $impl --reps $reps 2>&1 | grep -E "fill_cb|queue_fill|queue_copy")
  done
done
