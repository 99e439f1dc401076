#!/bin/bash
# session 21, kern call 1: (a) warm-up check, (b) native vs kernel, (c) copy4 variants, rows warm
L=$OUT/all.log
q() { nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,pstate,power.draw,temperature.gpu --format=csv,noheader >> $OUT/clocks.csv 2>&1; }
echo "== $(date +%T) start" >> $L; nvidia-smi -q -d CLOCK,PERFORMANCE >> $L 2>&1
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,pstate,power.draw --format=csv -lms 250 > $OUT/clocks.csv 2>&1 &
SMI=$!
step() { echo "== $(date +%T) $*" >> $L; local t=$SECONDS; "$@" >> $L 2>&1; echo "== rc $? wall $((SECONDS-t)) s" >> $L; }
step python3 benchmarks/workloads.py --only transfers --repeats 5 --warm-up 0 --json $OUT/transfers_cold_nowarm.json
echo "== $(date +%T) idle 15 s" >> $L; sleep 15
step python3 benchmarks/workloads.py --only transfers --repeats 5 --json $OUT/transfers_warmup.json
step python3 benchmarks/kernel_sweep.py --only aligned --repeats 7 --json $OUT/aligned.json
step python3 benchmarks/workloads.py --only rows,transfers --repeats 7 --json $OUT/rows_transfers.json --md $OUT/rows_transfers.md
step python3 benchmarks/calibrate.py --out $OUT/calibrate_256m.json
kill $SMI
echo "== $(date +%T) done" >> $L
