# Reads a buffer on the host thread's native stack.
# expect: OutOfBounds at 2
lddw %r1, {STACK}
ldxdw %r0, [%r1+8]
exit
