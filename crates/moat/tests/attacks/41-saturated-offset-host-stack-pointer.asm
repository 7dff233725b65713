# Issue 21, root cause 2: two constant offsets near i64::MAX and i64::MIN that wrap to +4096, then a store over the run's saved host stack pointer.
# expect: OutOfBounds at 7
mov %r1, %r10
lddw %r2, 0x7ffffffffffffff8
add %r1, %r2
lddw %r2, 0x8000000000001008
add %r1, %r2
stxdw [%r1+0], %r1
mov %r0, 0
exit
