# expect: not raised: no operation of the dialect matches the loop
# Near miss: one address read as a byte and as a half-word in each iteration (sum of both): no
# single element width covers the loop's accesses.
    mov %r0, 0
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    ldxh %r6, [%r4]
    add %r0, %r5
    add %r0, %r6
    add %r3, 1
    jlt %r3, 1400, loop
    exit
