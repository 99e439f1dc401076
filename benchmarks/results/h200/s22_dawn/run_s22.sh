#!/bin/bash
# session 22 dawn: main vs s22-dawn queue latency on Dawn, alternated; diagnostic; eager
D=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/m && tar xf "$D/main.tar" -C /tmp/m
ql() {  # tree name run
  (cd "$1" && PYTHONPATH=/tmp/site:$1 timeout 40 python3 benchmarks/queue_latency.py --implementation dawn --reps 300 --chain 200 --json "$OUT/ql_dawn_$2_$3.json" > "$OUT/ql_dawn_$2_$3.txt" 2>&1)
  echo "ql $2 $3 rc=$?"; grep -E "1_dispatch|raw_submit|hal \(|raw \(" "$OUT/ql_dawn_$2_$3.txt"
}
nvidia-smi -L
ql /tmp/m main 1; ql /tmp/t s22 1; ql /tmp/m main 2; ql /tmp/t s22 2
for t in m t; do
  (cd /tmp/$t && PYTHONPATH=/tmp/site:/tmp/$t timeout 40 python3 "$D/ab3.py" > "$OUT/ab3_$t.txt" 2>&1); echo "ab3 $t rc=$?"; grep -v Warn "$OUT/ab3_$t.txt"
done
(cd /tmp/t && PYTHONPATH=/tmp/site:/tmp/t timeout 80 python3 benchmarks/eager.py --implementation dawn --reps 7 --json "$OUT/eager_dawn_s22.json" > "$OUT/eager_dawn_s22.txt" 2>&1); echo "eager rc=$?"
grep -A4 "round trip" "$OUT/eager_dawn_s22.txt" | head -40
cd "$OUT" && tar czf results.tgz *.json *.txt && ls -la "$OUT"
