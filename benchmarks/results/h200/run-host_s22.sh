# s22-host: transfer.py at 256 MiB on Dawn, main's tree ($R) and the s22-host tree (/tmp/t), alternated; the host tests on s22-host; d2h_pages.py and buffer_reuse.py (s22-host).
R=$(cd "$(dirname "$0")/../.." && pwd)
T=/tmp/t
ARGS="--implementation dawn --min-size 256M --max-size 256M --reps 5 --budget 0.5 --no-torch"
mkdir -p /tmp/res
(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; nproc; uname -r; cat /sys/kernel/mm/transparent_hugepage/enabled; git -C $R log --oneline -1 2>/dev/null) > $OUT/info.txt 2>&1
run_tree() {  # name tree limit
  ( cd $2 && PYTHONPATH=/tmp/site:$2 timeout $3 python3 benchmarks/transfer.py $ARGS --json /tmp/res/$1.json ) > $OUT/$1.txt 2>&1
  echo "$1 rc=$? at ${SECONDS}s" >> $OUT/info.txt
}
run_tree t1_mine $T 40
run_tree t2_main $R 40
( cd $T && HAL_IMPLEMENTATION=dawn PYTHONPATH=/tmp/site:$T timeout 45 python3 -m pytest -p no:cacheprovider -o addopts= -q tests/test_host_cache.py tests/test_host_memory.py tests/test_buffer_pool.py ) > $OUT/tests.txt 2>&1
echo "tests rc=$? at ${SECONDS}s" >> $OUT/info.txt
( cd $T && export PYTHONPATH=/tmp/site:$T
  timeout 25 python3 benchmarks/d2h_pages.py --implementation dawn --size 256M --reps 5 --json /tmp/res/d2h_pages.json; echo "d2h rc=$?"
  timeout 25 python3 benchmarks/buffer_reuse.py --implementation dawn --sizes 64M,256M --reps 5 --rounds 2 --json /tmp/res/buffer_reuse.json; echo "reuse rc=$?" ) > $OUT/diag.txt 2>&1
echo "diag at ${SECONDS}s" >> $OUT/info.txt
tar czf $OUT/results.tgz -C /tmp/res . 2>/dev/null
if [ $SECONDS -lt 125 ]; then run_tree t3_main $R 35; fi
if [ $SECONDS -lt 160 ]; then run_tree t4_mine $T $((192 - SECONDS)); fi
tar czf $OUT/results.tgz -C /tmp/res . 2>/dev/null
echo "end at ${SECONDS}s" >> $OUT/info.txt
