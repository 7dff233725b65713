# expect: raised find.1 r1+r3, 47
# memchr: the index of the first byte 0x2f ('/') in the first r2 bytes at r1, or r2. Raised to find.1.
    jeq %r2, 0, none
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    jeq %r5, 0x2f, done
    add %r3, 1
    jlt %r3, %r2, loop
none:
    mov %r0, %r2
    exit
done:
    mov %r0, %r3
    exit
