# Reaches past its own map value into unallocated (uncommitted) arena of its own domain.
# expect: OutOfBounds at 11
mov %r1, 0
stxw [%r10-4], %r1
lddw %r1, map_idx(0)
mov %r2, %r10
add %r2, -4
call 1
jne %r0, 0, +2
mov %r0, 1
exit
add %r0, 0x100000
ldxdw %r0, [%r0]
exit
