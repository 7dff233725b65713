# A pointer forged from a constant is outside every region.
# error: OutOfBounds at 2
lddw %r1, 0x400000
ldxdw %r0, [%r1]
exit
