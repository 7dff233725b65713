# Issue 21, root cause 1: an atomic add on a spilled stack slot makes the slot fp+4096 (the run's saved host stack pointer, above the JIT's run context), then reads it.
# expect: OutOfBounds at 6
stdw [%r10-8], 4104
mov %r2, -8
lock add [%r10-8], %r2
ldxdw %r3, [%r10-8]
mov %r1, %r10
add %r1, %r3
ldxdw %r0, [%r1+0]
exit
