# A 4-byte load one byte past the end of the 4-byte context.
# mem: 01 02 03 04
# error: OutOfBounds at 0
ldxw %r0, [%r1+1]
exit
