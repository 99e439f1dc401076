# session 22, final call: the merged tree
R=$OUT/r; mkdir -p $R; START=$SECONDS
t() { echo "$1 done at $((SECONDS-START)) s" >> $R/times.txt; }
nvidia-smi --query-gpu=timestamp,clocks.sm,pstate --format=csv -lms 1000 > $R/clocks.csv 2>&1 & SMI=$!
( timeout 15 python3 benchmarks/queue_latency.py --reps 100 --chain 200 --json $R/warmup.json ) > $R/warmup.log 2>&1; t warmup
( HAL_BENCH_COMMIT=final22 timeout 70 python3 benchmarks/eager.py --reps 11 --json $R/eager1.json ) > $R/eager1.log 2>&1; t eager1
( HAL_BENCH_COMMIT=final22 timeout 70 python3 benchmarks/eager.py --implementation dawn --reps 11 --json $R/eager_dawn.json ) > $R/eager_dawn.log 2>&1; t eager_dawn
( HAL_BENCH_COMMIT=final22 timeout 70 python3 benchmarks/eager.py --reps 11 --json $R/eager2.json ) > $R/eager2.log 2>&1; t eager2
( timeout 25 python3 benchmarks/queue_latency.py --implementation dawn --reps 300 --chain 300 --json $R/ql_dawn.json ) > $R/ql_dawn.log 2>&1; t qldawn
( timeout 25 python3 benchmarks/queue_latency.py --reps 300 --chain 300 --json $R/ql_wgpu.json ) > $R/ql_wgpu.log 2>&1; t ql
( timeout 60 python3 benchmarks/transfer.py --implementation dawn --min-size 256M --max-size 256M --reps 5 --budget 0.5 --no-torch --json $R/transfer_dawn.json ) > $R/transfer_dawn.log 2>&1; t transfer
( timeout 40 python3 benchmarks/results/h200/s22_dawn/roundtrip_batches_s22.py ) > $R/diag_dawn.txt 2>&1; t diag
( timeout 80 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_wgpu.log 2>&1; t pytest_wgpu
( HAL_IMPLEMENTATION=dawn timeout 80 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_dawn.log 2>&1; t pytest_dawn
kill $SMI
tar czf $OUT/results.tgz -C $OUT r
