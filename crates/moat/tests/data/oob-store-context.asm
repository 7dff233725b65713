# A store below the context buffer.
# mem: 01 02 03 04
# error: OutOfBounds at 0
stb [%r1-1], 7
mov %r0, 0
exit
