# Stores into the writable view (memfd) through which the JIT writes code.
# expect: OutOfBounds at 2
lddw %r1, {CODE_RW}
stdw [%r1], 0xcc
mov %r0, 0
exit
