# r10 points one past the frame: reading at r10 is out of bounds.
# error: OutOfBounds at 0
ldxb %r0, [%r10]
exit
