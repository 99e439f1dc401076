# s21-disp: interleaved A/B of main 8554bf1 (base) against s21-disp (new) on the H200.
R=$OUT/r; mkdir -p $R; ROOT=$PWD; START=$SECONDS
run_tree() {  # tree round
  cd $ROOT/.dev/disp-$1; export PYTHONPATH=/tmp/site:$PWD HAL_BENCH_COMMIT=$1
  ( timeout 70 python3 benchmarks/eager.py --reps 21 --json $R/eager_$1_$2.json ) > $R/eager_$1_$2.log 2>&1
  echo "eager $1 $2 done at $((SECONDS-START)) s" >> $R/times.txt
  ( timeout 30 python3 benchmarks/queue_latency.py --implementation dawn --reps 200 --chain 500 --json $R/ql_dawn_$1_$2.json ) > $R/ql_dawn_$1_$2.log 2>&1
  echo "ql $1 $2 done at $((SECONDS-START)) s" >> $R/times.txt
}
cd $ROOT/.dev/disp-new; export PYTHONPATH=/tmp/site:$PWD
( timeout 15 python3 benchmarks/queue_latency.py --reps 100 --chain 200 --json $R/warmup.json ) > $R/warmup.log 2>&1
echo "warm-up done at $((SECONDS-START)) s" >> $R/times.txt
run_tree base 1; run_tree new 1
if [ $((SECONDS-START)) -lt 120 ]; then run_tree base 2; run_tree new 2; fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv >> $R/times.txt 2>&1
tar czf $OUT/results.tgz -C $OUT r
