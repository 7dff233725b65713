# Overwrites a buffer on the host thread's native stack.
# expect: OutOfBounds at 3
lddw %r1, {STACK}
mov %r2, -1
stxdw [%r1], %r2
mov %r0, 0
exit
