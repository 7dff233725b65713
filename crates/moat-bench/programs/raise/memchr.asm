# memchr: the index of the first '/' in the 1500 bytes at r1, or 1500.
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    jeq %r5, 0x2f, done
    add %r3, 1
    jlt %r3, 1500, loop
done:
    mov %r0, %r3
    exit
