# session 24 A/B: d0bf912 (session 23's end) vs this tree, alternated; head also with the Dawn
# waiter poll off (HAL_WAIT_POLL_US=0: isolates it); then both suites
H=$PWD; R=$OUT/r; mkdir -p $R /tmp/base; tar xf $H/.dev/s24/base.tar -C /tmp/base
t() { echo "$1 done at $SECONDS s" >> $R/times.txt; }
eg() { (cd $1 && PYTHONPATH=/tmp/site:$1 HAL_BENCH_COMMIT=$2 timeout 60 python3 benchmarks/eager.py --reps 9 $4 --json $R/eager_$2_$3.json > $R/eager_$2_$3.log 2>&1); t "eager $2 $3"; }
ql() { (cd $1 && PYTHONPATH=/tmp/site:$1 timeout 30 python3 benchmarks/queue_latency.py --implementation $4 --reps 300 --chain 200 --json $R/ql_$4_$2_$3.json > $R/ql_$4_$2_$3.log 2>&1); t "ql $4 $2 $3"; }
dr() { (cd $1 && PYTHONPATH=/tmp/site:$1 timeout 40 python3 benchmarks/dawn_round_trip.py --rounds 40 --batch 40 --json $R/drt_$2_$3.json > $R/drt_$2_$3.txt 2>&1); t "drt $2 $3"; }
nvidia-smi -L > $R/host.txt 2>&1; nproc >> $R/host.txt
timeout 15 python3 benchmarks/queue_latency.py --reps 100 --chain 100 > /dev/null 2>&1
for i in 1 2 3; do ql /tmp/base base $i dawn; ql $H head $i dawn; HAL_WAIT_POLL_US=0 ql $H nopoll $i dawn; done
for i in 1 2 3; do dr /tmp/base base $i; dr $H head $i; HAL_WAIT_POLL_US=0 dr $H nopoll $i; done
for i in 1 2; do ql /tmp/base base $i wgpu-native; ql $H head $i wgpu-native; done
for i in 1 2 3; do eg /tmp/base base $i; eg $H head $i; done
for i in 1 2; do eg /tmp/base base d$i "--implementation dawn"; eg $H head d$i "--implementation dawn"; done
( timeout 100 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_wgpu.log 2>&1; t pytest_wgpu
( HAL_IMPLEMENTATION=dawn timeout 100 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_dawn.log 2>&1; t pytest_dawn
tar czf $OUT/results.tgz -C $OUT r
