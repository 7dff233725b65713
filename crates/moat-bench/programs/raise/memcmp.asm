# memcmp: the index of the first byte where the 740 bytes at r1 and at r1+750 differ, or 740.
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    ldxb %r6, [%r4+750]
    jne %r5, %r6, done
    add %r3, 1
    jlt %r3, 740, loop
done:
    mov %r0, %r3
    exit
