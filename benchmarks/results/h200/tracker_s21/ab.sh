# session 21: the polling tracker (HAL_TRACKER_POLL_US default 250) against the blocking one (0), one call
R=$OUT/r; mkdir -p $R; START=$SECONDS
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,pstate --format=csv -lms 1000 > $R/clocks.csv 2>&1 & SMI=$!
( timeout 20 python3 benchmarks/queue_latency.py --reps 100 --chain 200 --json $R/warmup.json ) > $R/warmup.log 2>&1
echo "warm-up done at $((SECONDS-START)) s" >> $R/times.txt
( timeout 120 python3 benchmarks/kernel_sweep.py --only tracker --repeats 5 --spin-us 5000 --tracker-poll-us 0 --json $R/tracker.json ) > $R/tracker.log 2>&1
echo "tracker sweep done at $((SECONDS-START)) s" >> $R/times.txt
for round in 1 2; do
  for mode in 0 250; do
    ( HAL_TRACKER_POLL_US=$mode HAL_BENCH_COMMIT=poll$mode timeout 70 python3 benchmarks/eager.py --reps 11 --json $R/eager_${mode}_$round.json ) > $R/eager_${mode}_$round.log 2>&1
    echo "eager $mode $round done at $((SECONDS-START)) s" >> $R/times.txt
    if [ $round = 1 ]; then
      ( HAL_TRACKER_POLL_US=$mode timeout 30 python3 benchmarks/queue_latency.py --reps 200 --chain 500 --json $R/ql_${mode}.json ) > $R/ql_${mode}.log 2>&1
      echo "ql $mode done at $((SECONDS-START)) s" >> $R/times.txt
    fi
  done
  if [ $((SECONDS-START)) -gt 330 ]; then break; fi
done
kill $SMI
tar czf $OUT/results.tgz -C $OUT r
