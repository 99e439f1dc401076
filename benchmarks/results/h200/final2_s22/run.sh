# session 22 final A/B: 435c397 (session 21's end) vs the final tree, alternated, then the suites
H=$PWD; R=$OUT/r; mkdir -p $R /tmp/base; tar xf $H/.dev/ab2/base.tar -C /tmp/base
t() { echo "$1 done at $SECONDS s" >> $R/times.txt; }
eg() { (cd $1 && PYTHONPATH=/tmp/site:$1 HAL_BENCH_COMMIT=$2 timeout 60 python3 benchmarks/eager.py --reps 9 --json $R/eager_$2_$3.json > $R/eager_$2_$3.log 2>&1); t "eager $2 $3"; }
ql() { (cd $1 && PYTHONPATH=/tmp/site:$1 timeout 30 python3 benchmarks/queue_latency.py --implementation $4 --reps 300 --chain 200 --json $R/ql_$4_$2_$3.json > $R/ql_$4_$2_$3.log 2>&1); t "ql $4 $2 $3"; }
nvidia-smi --query-gpu=timestamp,clocks.sm,pstate --format=csv -lms 1000 > $R/clocks.csv 2>&1 & SMI=$!
timeout 15 python3 benchmarks/queue_latency.py --reps 100 --chain 100 > /dev/null 2>&1
for i in 1 2 3; do eg /tmp/base base $i; eg $H head $i; done
for i in 1 2; do ql /tmp/base base $i dawn; ql $H head $i dawn; ql /tmp/base base $i wgpu-native; ql $H head $i wgpu-native; done
(timeout 40 python3 benchmarks/results/h200/s22_dawn/roundtrip_batches_s22.py > $R/diag_dawn.txt 2>&1); t diag
(HAL_BENCH_COMMIT=final22b timeout 60 python3 benchmarks/eager.py --implementation dawn --reps 9 --json $R/eager_dawn.json > $R/eager_dawn.log 2>&1); t eager_dawn
( timeout 80 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_wgpu.log 2>&1; t pytest_wgpu
( HAL_IMPLEMENTATION=dawn timeout 80 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_dawn.log 2>&1; t pytest_dawn
kill $SMI
tar czf $OUT/results.tgz -C $OUT r
