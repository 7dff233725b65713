# expect: raised fill.1 r1+r3, 90
# memset: fills bytes 0..r2 of the buffer at r1 with 0x5a, a byte at a time; returns the last byte.
    jeq %r2, 0, out
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    stb [%r4], 0x5a
    add %r3, 1
    jlt %r3, %r2, loop
out:
    ldxb %r0, [%r1+1499]
    exit
