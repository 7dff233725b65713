# The sum of the big-endian 16-bit words of the 1500 bytes at r1 in the form of
# examples/asm/checksum.s: the pointer advances (`r1 += 2`), the length counts down (`r2 -= 2`).
    mov %r2, 1500
    mov %r0, 0
loop:
    jlt %r2, 2, done
    ldxh %r3, [%r1]
    be16 %r3
    add %r0, %r3
    add %r1, 2
    sub %r2, 2
    ja loop
done:
    exit
