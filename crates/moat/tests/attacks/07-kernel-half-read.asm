# Reads a high (kernel-half) address, the kernel's direct map.
# expect: OutOfBounds at 2
lddw %r1, 0xffff888000000000
ldxdw %r0, [%r1]
exit
