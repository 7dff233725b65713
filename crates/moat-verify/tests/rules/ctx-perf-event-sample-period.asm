# rule: a perf_event program may read sample_period and addr after the registers, narrowly too (twin of ctx-perf-event-regs-narrow).
# context: perf-event
# accept
ldxdw %r2, [%r1+168]            # 0: sample_period
ldxw %r3, [%r1+176]             # 1: addr's low half
ldxdw %r0, [%r1+128]            # 2: a register, whole
add %r0, %r2
add %r0, %r3
exit
