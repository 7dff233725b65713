# Dereferences address 0.
# expect: OutOfBounds at 1
mov %r1, 0
ldxw %r0, [%r1]
exit
