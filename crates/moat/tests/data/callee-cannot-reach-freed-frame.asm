# After a callee returns, its frame is gone: a pointer into it is out of bounds.
# error: OutOfBounds at 2
call local f
mov %r1, %r0
ldxdw %r0, [%r1]
exit
f:
mov %r0, %r10
add %r0, -8
stdw [%r10-8], 5
exit
