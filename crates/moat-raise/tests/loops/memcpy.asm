# expect: raised copy.8 r1+r3+752, r1+r3
# memcpy-like: copies the first 744 bytes of the packet at r1 to offset 752, 8 bytes at a time, and
# returns the last copied 32-bit word (bytes 740..744 of the packet).
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxdw %r5, [%r4]
    stxdw [%r4+752], %r5
    add %r3, 8
    jlt %r3, 744, loop
    ldxw %r0, [%r1+1492]
    exit
