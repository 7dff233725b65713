# expect: raised fill.4 r1+r3, r2
# Fills the first 1200 bytes at r1 with the 32-bit value in r2 (the context's length), 4 bytes at a
# time, from a register rather than an immediate.
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    stxw [%r4], %r2
    add %r3, 4
    jlt %r3, 1200, loop
    ldxw %r0, [%r1+1196]
    exit
