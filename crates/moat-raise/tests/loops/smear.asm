# expect: not raised: no operation of the dialect matches the loop
# Near miss: an aliasing write; each byte is copied onto the next one (a forward smear), which no
# non-overlapping copy expresses.
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    stxb [%r4+1], %r5
    add %r3, 1
    jlt %r3, 700, loop
    ldxb %r0, [%r1+600]
    exit
