#!/bin/bash
# session 21, kern call 2: session-20 transfer rows cold, full warm workloads run, tracker A/B
L=$OUT/all.log
echo "== $(date +%T) start" >> $L
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,pstate,power.draw --format=csv -lms 500 > $OUT/clocks.csv 2>&1 &
SMI=$!
step() { echo "== $(date +%T) $*" >> $L; local t=$SECONDS; "$@" >> $L 2>&1; echo "== rc $? wall $((SECONDS-t)) s" >> $L; }
step python3 benchmarks/workloads_s20.py --only transfers --json $OUT/transfers_s20code_cold.json
step python3 benchmarks/workloads.py --repeats 5 --json $OUT/workloads_s21.json --md $OUT/workloads_s21.md
step python3 benchmarks/kernel_sweep.py --only tracker --repeats 7 --spin-us 5000,1000000 --json $OUT/tracker_s21.json
kill $SMI
echo "== $(date +%T) done" >> $L
