set -x
cd "$(dirname "$0")/../.."
R=$OUT/r; mkdir -p $R
nproc > $R/host.txt; cat /sys/kernel/mm/transparent_hugepage/enabled >> $R/host.txt
python3 .dev/s23a/prof_fill.py > $R/prof_fill.txt 2>&1
for i in 1 2; do python3 benchmarks/dawn_round_trip.py --rounds 60 --batch 40 --json $R/drt_$i.json > $R/drt_$i.txt 2>&1; done
for impl in dawn wgpu-native; do python3 benchmarks/queue_latency.py --implementation $impl --reps 400 --chain 300 --json $R/ql_$impl.json > $R/ql_$impl.txt 2>&1; done
IMPL=wgpu-native python3 benchmarks/results/h200/s22_dawn/roundtrip_batches_s22.py > $R/diag_wgpu.txt 2>&1
cd $OUT && tar czf results.tgz r && rm -rf r
