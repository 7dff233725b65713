# memset: fills the 1500 bytes at r1 with 0x5a, a byte at a time; returns the last byte.
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    stb [%r4], 0x5a
    add %r3, 1
    jlt %r3, 1500, loop
    ldxb %r0, [%r1+1499]
    exit
