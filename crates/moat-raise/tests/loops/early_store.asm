# expect: not raised: no operation of the dialect matches the loop
# Near miss: an early exit on another condition after a side effect: copies bytes until it copies
# a '/', storing before it tests (strcpy-like); no single operation of the dialect does both.
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    stxb [%r4+750], %r5
    jeq %r5, 0x2f, done
    add %r3, 1
    jlt %r3, 740, loop
done:
    mov %r0, %r3
    exit
