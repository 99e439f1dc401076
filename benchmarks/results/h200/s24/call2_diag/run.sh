# session 24 diagnostic: where 1000 copies go on each implementation; queue_latency with the
# modes' order rotated, Dawn with and without the waiter poll; the two tests fixed for it
H=$PWD; R=$OUT/r; mkdir -p $R
t() { echo "$1 done at $SECONDS s" >> $R/times.txt; }
for i in 1 2 3; do for impl in wgpu-native dawn; do python3 .dev/s24b/split.py $impl > $R/split_${impl}_$i.txt 2>&1; done; done; t split
for i in 1 2 3; do
  timeout 30 python3 benchmarks/queue_latency.py --implementation dawn --reps 300 --chain 200 --json $R/ql_dawn_head_$i.json > $R/ql_dawn_head_$i.log 2>&1
  HAL_WAIT_POLL_US=0 timeout 30 python3 benchmarks/queue_latency.py --implementation dawn --reps 300 --chain 200 --json $R/ql_dawn_nopoll_$i.json > $R/ql_dawn_nopoll_$i.log 2>&1
  timeout 30 python3 benchmarks/queue_latency.py --implementation wgpu-native --reps 300 --chain 200 --json $R/ql_wgpu_head_$i.json > $R/ql_wgpu_head_$i.log 2>&1
done; t ql
HAL_IMPLEMENTATION=dawn timeout 60 python3 -m pytest -o addopts= -q tests/test_bounded_waits.py tests/test_tracker_yields.py tests/test_waiter_poll.py > $R/pytest_fixed.log 2>&1; t pytest
tar czf $OUT/results.tgz -C $OUT r
