# strlen: the length of the NUL-terminated string at r1, at most 1499 bytes.
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    jeq %r5, 0, done
    add %r3, 1
    jlt %r3, 1499, loop
done:
    mov %r0, %r3
    exit
