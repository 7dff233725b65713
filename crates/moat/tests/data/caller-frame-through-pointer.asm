# A callee may write its caller's frame through a pointer it was given.
# result: 0x7
mov %r1, %r10
add %r1, -8
call local f
ldxdw %r0, [%r10-8]
exit
f:
mov %r2, 7
stxdw [%r1], %r2
mov %r0, 0
exit
