import time, statistics, sys, cProfile, pstats
import hal
d = hal.create_device(implementation="null", backend="null")
buf = d.allocate_buffer(4096)
sem = d.create_semaphore()
v = [0]
def rt():
    with d.record() as cb:
        cb.fill_buffer(buf, 0, 4, 0)
    v[0] += 1
    d.queue_execute(cb, signal=[(sem, v[0])])
    sem.wait(v[0], timeout=60)
def pieces(n=3000):
    a=[];b=[];c=[];e=[]
    for _ in range(n):
        t0=time.perf_counter()
        cb = d.create_command_buffer(hal.CommandBufferMode.ONE_SHOT) if hasattr(hal.CommandBufferMode,'ONE_SHOT') else None
        cb.begin(); cb.fill_buffer(buf,0,4,0)
        t1=time.perf_counter()
        cb.end()
        t2=time.perf_counter()
        v[0]+=1
        d.queue_execute(cb, signal=[(sem, v[0])])
        t3=time.perf_counter()
        sem.wait(v[0], timeout=60)
        t4=time.perf_counter()
        a.append(t1-t0);b.append(t2-t1);c.append(t3-t2);e.append(t4-t3)
    m=lambda x: statistics.median(x)*1e6
    print(f"record {m(a):.2f} end {m(b):.2f} execute {m(c):.2f} wait {m(e):.2f}")
for _ in range(3000): rt()
pieces()
pieces()
if len(sys.argv)>1:
    pr=cProfile.Profile(); pr.enable()
    for _ in range(20000): rt()
    pr.disable(); pstats.Stats(pr).sort_stats('tottime').print_stats(40)
