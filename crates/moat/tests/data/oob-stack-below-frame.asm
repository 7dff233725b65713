# The main frame is 512 bytes: 520 bytes below r10 is outside it.
# error: OutOfBounds at 1
mov %r1, 1
stxdw [%r10-520], %r1
mov %r0, 0
exit
