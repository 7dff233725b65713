# rule: a load at or above the frame pointer is out of bounds.
# context: buffer 8
# reject: OutOfBounds at 0
ldxdw %r0, [%r10+0]
exit
