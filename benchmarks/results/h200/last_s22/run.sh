# session 22, last call: the final tree's suites, one eager.py and queue_latency run per implementation
R=$OUT/r; mkdir -p $R; START=$SECONDS
t() { echo "$1 done at $((SECONDS-START)) s" >> $R/times.txt; }
( HAL_BENCH_COMMIT=final22c timeout 60 python3 benchmarks/eager.py --reps 9 --json $R/eager.json ) > $R/eager.log 2>&1; t eager
( timeout 25 python3 benchmarks/queue_latency.py --implementation dawn --reps 300 --chain 200 --json $R/ql_dawn.json ) > $R/ql_dawn.log 2>&1; t qldawn
( timeout 25 python3 benchmarks/queue_latency.py --reps 300 --chain 200 --json $R/ql_wgpu.json ) > $R/ql_wgpu.log 2>&1; t ql
( timeout 80 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_wgpu.log 2>&1; t pytest_wgpu
( HAL_IMPLEMENTATION=dawn timeout 80 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_dawn.log 2>&1; t pytest_dawn
tar czf $OUT/results.tgz -C $OUT r
