# Overwrites the host heap canary through a forged pointer.
# expect: OutOfBounds at 2
lddw %r1, {HEAP}
stdw [%r1], 0x41414141
mov %r0, 0
exit
