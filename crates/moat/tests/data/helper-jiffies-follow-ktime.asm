# bpf_jiffies64 (helper 118) counts 250 Hz ticks of bpf_ktime_get_ns's clock (helper 5): jiffies
# read between two ktime reads lies between their tick counts (4 000 000 ns per tick).
# result: 0x1
call 5
mov %r6, %r0
call 118
mov %r7, %r0
call 5
mov %r8, %r0
div %r6, 4000000
div %r8, 4000000
mov %r0, 0
jlt %r7, %r6, +2
jgt %r7, %r8, +1
mov %r0, 1
exit
