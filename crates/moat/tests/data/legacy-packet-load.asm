# ldabs reads big-endian from the packet (the context); out of range ends the program with 0.
# mem: 12 34 56 78
# result: 0x0
mov %r6, %r1
ldabsh 2
jne %r0, 0x5678, +1
ldabsw 1
exit
