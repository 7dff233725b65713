# expect: not raised: no term found for a live-out value
# FNV-1a (64-bit) over the 1500-byte packet at r1, one byte per round (xor, multiply by the FNV
# prime), folded to 32 bits at the end so the kernel's 32-bit `retval` can be compared.
    lddw %r0, 0xcbf29ce484222325
    lddw %r6, 0x100000001b3
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    xor %r0, %r5
    mul %r0, %r6
    add %r3, 1
    jlt %r3, 1500, loop
    mov %r1, %r0
    rsh %r1, 32
    xor %r0, %r1
    lsh %r0, 32
    rsh %r0, 32
    exit
