# session 24, last tree: queue_latency (shuffled) on both implementations, eager.py once per
# implementation, both suites
R=$OUT/r; mkdir -p $R
t() { echo "$1 done at $SECONDS s" >> $R/times.txt; }
timeout 15 python3 benchmarks/queue_latency.py --reps 100 --chain 100 --json /tmp/warm.json > /dev/null 2>&1
for i in 1 2; do for impl in dawn wgpu-native; do timeout 30 python3 benchmarks/queue_latency.py --implementation $impl --reps 300 --chain 200 --json $R/ql_${impl}_$i.json > $R/ql_${impl}_$i.log 2>&1; t "ql $impl $i"; done; done
for impl in wgpu-native dawn; do HAL_BENCH_COMMIT=$(cat .dev/s24f/commit) timeout 60 python3 benchmarks/eager.py --reps 9 --implementation $impl --json $R/eager_$impl.json > $R/eager_$impl.log 2>&1; t "eager $impl"; done
( timeout 100 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_wgpu.log 2>&1; t pytest_wgpu
( HAL_IMPLEMENTATION=dawn timeout 100 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_dawn.log 2>&1; t pytest_dawn
tar czf $OUT/results.tgz -C $OUT r
