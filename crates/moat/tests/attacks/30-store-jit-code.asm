# Stores into the executable view of JIT code.
# expect: OutOfBounds at 2
lddw %r1, {CODE}
stdw [%r1], 0xcc
mov %r0, 0
exit
