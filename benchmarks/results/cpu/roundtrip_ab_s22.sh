# usage: ab.sh KIND WHAT ROUNDS ; alternates base (main) and new (worktree) processes
export XDG_RUNTIME_DIR=/tmp/hal-xdg-$(id -u)
A=(); B=()
for i in $(seq $3); do
  A+=($(cd /tmp/rtbase && PYTHONPATH=/tmp/rtbase $ENVX /work/main/.venv/bin/python $(dirname $(readlink -f $0))/roundtrip_ab_s22.py $1 $2 2>/dev/null | tail -1))
  B+=($(cd /work/wt-rt && PYTHONPATH=/work/wt-rt $ENVX /work/main/.venv/bin/python $(dirname $(readlink -f $0))/roundtrip_ab_s22.py $1 $2 2>/dev/null | tail -1))
done
python3 -c "
import sys,statistics as st
a=[float(x) for x in '${A[*]}'.split()]; b=[float(x) for x in '${B[*]}'.split()]
print('$1 $2 base best %.1f med %.1f | new best %.1f med %.1f | cut best %.0f%% med %.0f%%' % (min(a), st.median(a), min(b), st.median(b), 100*(1-min(b)/min(a)), 100*(1-st.median(b)/st.median(a))))
"
