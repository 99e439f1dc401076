# session 21, final call: the merged tree (stream-polling tracker, dispatch recipes, lanes)
R=$OUT/r; mkdir -p $R; START=$SECONDS
t() { echo "$1 done at $((SECONDS-START)) s" >> $R/times.txt; }
nvidia-smi --query-gpu=timestamp,clocks.sm,pstate --format=csv -lms 1000 > $R/clocks.csv 2>&1 & SMI=$!
( timeout 15 python3 benchmarks/queue_latency.py --reps 100 --chain 200 --json $R/warmup.json ) > $R/warmup.log 2>&1; t warmup
( timeout 60 python3 benchmarks/kernel_sweep.py --only tracker --repeats 5 --spin-us "" --tracker-poll-us 0 --json $R/tracker.json ) > $R/tracker.log 2>&1; t tracker
( HAL_BENCH_COMMIT=final21 timeout 60 python3 benchmarks/eager.py --reps 11 --json $R/eager.json ) > $R/eager.log 2>&1; t eager
( timeout 20 python3 benchmarks/queue_latency.py --reps 200 --chain 500 --json $R/ql_wgpu.json ) > $R/ql_wgpu.log 2>&1; t ql
( timeout 20 python3 benchmarks/queue_latency.py --implementation dawn --reps 200 --chain 500 --json $R/ql_dawn.json ) > $R/ql_dawn.log 2>&1; t qldawn
( timeout 75 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_wgpu.log 2>&1; t pytest_wgpu
( HAL_IMPLEMENTATION=dawn timeout 75 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_dawn.log 2>&1; t pytest_dawn
kill $SMI
tar czf $OUT/results.tgz -C $OUT r
