# session 24, after review: Dawn's poll through a zero-timeout WaitAny; queue_latency shuffled
# on Dawn with and without the poll (alternated), the cross-device check, both suites
R=$OUT/r; mkdir -p $R
t() { echo "$1 done at $SECONDS s" >> $R/times.txt; }
ql() { timeout 30 python3 benchmarks/queue_latency.py --implementation $3 --reps 300 --chain 200 --json $R/ql_$3_$1_$2.json > $R/ql_$3_$1_$2.log 2>&1; t "ql $3 $1 $2"; }
timeout 15 python3 benchmarks/queue_latency.py --reps 100 --chain 100 --json /tmp/warm.json > /dev/null 2>&1
for i in 1 2 3; do ql head $i dawn; HAL_WAIT_POLL_US=0 ql nopoll $i dawn; done
# the review reproducer (the same scenario as tests/test_waiter_poll.py::test_a_dawn_poll_does_not_wait_for_another_devices_work)
timeout 60 python3 .dev/s24e/dawn_cross_device.py > $R/cross_device.txt 2>&1; t cross
( timeout 100 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_wgpu.log 2>&1; t pytest_wgpu
( HAL_IMPLEMENTATION=dawn timeout 100 python3 -m pytest -p xdist -n 14 -o addopts= -q --timeout 60 --ignore=tests/test_install.py tests ) > $R/pytest_dawn.log 2>&1; t pytest_dawn
tar czf $OUT/results.tgz -C $OUT r
