# expect: not raised: not an invariant base plus an induction variable
# Near miss: a data-dependent stride (the index advances by a loaded byte): not expressible.
    mov %r3, 0
    mov %r0, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    add %r0, %r5
    and %r5, 7
    add %r3, %r5
    add %r3, 1
    jlt %r3, 1400, loop
    exit
