# session 22 A/B: 435c397 (session 21's end) vs HEAD, alternated in one machine start
H=$PWD; R=$OUT/r; mkdir -p $R /tmp/base; tar xf $H/.dev/ab/base.tar -C /tmp/base
t() { echo "$1 done at $SECONDS s" >> $R/times.txt; }
eg() { (cd $1 && PYTHONPATH=/tmp/site:$1 HAL_BENCH_COMMIT=$2 timeout 60 python3 benchmarks/eager.py --reps 9 --json $R/eager_$2_$3.json > $R/eager_$2_$3.log 2>&1); t "eager $2 $3"; }
ql() { (cd $1 && PYTHONPATH=/tmp/site:$1 timeout 30 python3 benchmarks/queue_latency.py --implementation $4 --reps 300 --chain 200 --json $R/ql_$4_$2_$3.json > $R/ql_$4_$2_$3.log 2>&1); t "ql $4 $2 $3"; }
timeout 15 python3 benchmarks/queue_latency.py --reps 100 --chain 100 > /dev/null 2>&1
for i in 1 2 3; do eg /tmp/base base $i; eg $H head $i; done
for i in 1 2; do ql /tmp/base base $i dawn; ql $H head $i dawn; ql /tmp/base base $i wgpu-native; ql $H head $i wgpu-native; done
tar czf $OUT/results.tgz -C $OUT r
