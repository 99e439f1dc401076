#!/bin/bash
# session 22 dawn: main vs s22-dawn queue latency on Dawn, alternated; diagnostic; eager
# (The run that produced this folder wrote straight to $OUT and ran the diagnostic as ab3.py,
# the same code as roundtrip_batches_s22.py before it was tidied; otherwise this script.)
D=$(cd "$(dirname "$0")" && pwd)
# Results go to /tmp/res, then one results.tgz into $OUT (a run returns at most 8 files: the
# session-22 run wrote 15 there and lost 7 of them).
FINAL_OUT=$OUT
OUT=/tmp/res
mkdir -p "$OUT"
mkdir -p /tmp/m && tar xf "$D/main.tar" -C /tmp/m
ql() {  # tree name run
  (cd "$1" && PYTHONPATH=/tmp/site:$1 timeout 40 python3 benchmarks/queue_latency.py --implementation dawn --reps 300 --chain 200 --json "$OUT/ql_dawn_$2_$3.json" > "$OUT/ql_dawn_$2_$3.txt" 2>&1)
  echo "ql $2 $3 rc=$?"; grep -E "1_dispatch|raw_submit|hal \(|raw \(" "$OUT/ql_dawn_$2_$3.txt"
}
nvidia-smi -L
ql /tmp/m main 1; ql /tmp/t s22 1; ql /tmp/m main 2; ql /tmp/t s22 2
for t in m t; do
  (cd /tmp/$t && PYTHONPATH=/tmp/site:/tmp/$t timeout 40 python3 "$D/roundtrip_batches_s22.py" > "$OUT/ab3_$t.txt" 2>&1); echo "ab3 $t rc=$?"; grep -v Warn "$OUT/ab3_$t.txt"
done
(cd /tmp/t && PYTHONPATH=/tmp/site:/tmp/t timeout 80 python3 benchmarks/eager.py --implementation dawn --reps 7 --json "$OUT/eager_dawn_s22.json" > "$OUT/eager_dawn_s22.txt" 2>&1); echo "eager rc=$?"
grep -A4 "round trip" "$OUT/eager_dawn_s22.txt" | head -40
cd "$OUT" && tar czf "$FINAL_OUT/results.tgz" ./*.json ./*.txt ./*.md && ls -la "$OUT" "$FINAL_OUT"
