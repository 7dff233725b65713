# Reads below the bottom of the whole 4 KiB stack.
# expect: OutOfBounds at 2
mov %r1, %r10
sub %r1, 4104
ldxdw %r0, [%r1]
exit
