# XOR of the first 1496 bytes at r1 as little-endian 32-bit words.
    mov %r0, 0
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxw %r5, [%r4]
    xor %r0, %r5
    add %r3, 4
    jlt %r3, 1496, loop
    exit
