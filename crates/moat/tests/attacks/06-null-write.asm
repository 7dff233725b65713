# Stores through a null pointer plus an offset.
# expect: OutOfBounds at 1
mov %r1, 0
stw [%r1+16], 7
mov %r0, 0
exit
