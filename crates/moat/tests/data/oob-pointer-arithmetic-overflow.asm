# An offset that wraps the address space does not wrap into a region.
# mem: 00 00 00 00 00 00 00 00
# error: OutOfBounds at 1
add %r1, -1
ldxdw %r0, [%r1+2]
exit
