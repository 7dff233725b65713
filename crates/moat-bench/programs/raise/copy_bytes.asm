# memcpy a byte at a time: copies the first 744 bytes at r1 to offset 752; returns the last copied
# byte.
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    stxb [%r4+752], %r5
    add %r3, 1
    jlt %r3, 744, loop
    ldxb %r0, [%r1+1495]
    exit
