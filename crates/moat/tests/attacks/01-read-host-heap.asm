# Reads a host heap buffer (a Vec the test owns) through a forged pointer.
# expect: OutOfBounds at 2
lddw %r1, {HEAP}
ldxdw %r0, [%r1]
exit
