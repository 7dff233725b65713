# expect: raised reduce.and.8 r1+r3, r0
# AND of the little-endian 64-bit words of the first 1496 bytes at r1, starting from all ones.
    mov %r0, -1
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxdw %r5, [%r4]
    and %r0, %r5
    add %r3, 8
    jlt %r3, 1496, loop
    exit
