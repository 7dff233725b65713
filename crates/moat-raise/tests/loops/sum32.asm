# expect: raised reduce.add.4.32 r1+r3, r0
# The 32-bit wrapping sum of the little-endian 32-bit words of the first 1496 bytes at r1 (`w0 +=`).
    mov %r0, 0
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxw %r5, [%r4]
    add32 %r0, %r5
    add %r3, 4
    jlt %r3, 1496, loop
    exit
