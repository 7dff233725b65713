# Writes a kernel-text address.
# expect: OutOfBounds at 2
lddw %r1, 0xffffffff81000000
stxdw [%r1], %r1
mov %r0, 0
exit
