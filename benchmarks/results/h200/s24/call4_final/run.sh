# session 24 final: queue_latency (modes shuffled each repetition) on Dawn with and without the
# waiter poll, wgpu-native; eager.py 3x wgpu-native, 2x Dawn (d0bf912 alternated); Dawn
# transfers at 256 MiB; both suites
H=$PWD; R=$OUT/r; mkdir -p $R /tmp/base; tar xf $H/.dev/s24/base.tar -C /tmp/base
t() { echo "$1 done at $SECONDS s" >> $R/times.txt; }
eg() { (cd $1 && PYTHONPATH=/tmp/site:$1 HAL_BENCH_COMMIT=$2 timeout 60 python3 benchmarks/eager.py --reps 9 $4 --json $R/eager_$2_$3.json > $R/eager_$2_$3.log 2>&1); t "eager $2 $3"; }
ql() { timeout 30 python3 benchmarks/queue_latency.py --implementation $3 --reps 300 --chain 200 --json $R/ql_$3_$1_$2.json > $R/ql_$3_$1_$2.log 2>&1; t "ql $3 $1 $2"; }
nvidia-smi -L > $R/host.txt 2>&1; nproc >> $R/host.txt
timeout 15 python3 benchmarks/queue_latency.py --reps 100 --chain 100 --json /tmp/warm.json > /dev/null 2>&1
for i in 1 2 3; do ql head $i dawn; HAL_WAIT_POLL_US=0 ql nopoll $i dawn; ql head $i wgpu-native; done
for i in 1 2; do timeout 40 python3 benchmarks/dawn_round_trip.py --rounds 40 --batch 40 --json $R/drt_head_$i.json > $R/drt_head_$i.txt 2>&1; done; t drt
for i in 1 2 3; do eg /tmp/base base $i; eg $H head $i; done
for i in 1 2; do eg /tmp/base base d$i "--implementation dawn"; eg $H head d$i "--implementation dawn"; done
timeout 90 python3 benchmarks/transfer.py --implementation dawn --min-size 256M --max-size 256M --reps 5 --budget 0.5 --no-torch --json $R/transfer_dawn.json > $R/transfer_dawn.log 2>&1; t transfer
( timeout 100 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_wgpu.log 2>&1; t pytest_wgpu
( HAL_IMPLEMENTATION=dawn timeout 100 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_dawn.log 2>&1; t pytest_dawn
tar czf $OUT/results.tgz -C $OUT r
