# expect: not raised: no operation of the dialect matches the loop
# Near miss: copies every other byte (stride 2, element 1): no operation of the dialect matches.
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    stxb [%r4+750], %r5
    add %r3, 2
    jlt %r3, 740, loop
    ldxb %r0, [%r1+752]
    exit
