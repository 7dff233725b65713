# expect: raised reduce.add.2 r1+r3, r0
# Internet checksum (RFC 1071): the 16-bit one's-complement sum of a 1500-byte packet at r1, read as
# little-endian half-words, folded twice (enough for 750 words) and complemented. The length is fixed
# at 1500 because rbpf does not pass the length in r2. Result: `moat_bench::internet_checksum`.
    mov %r0, 0
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxh %r5, [%r4]
    add %r0, %r5
    add %r3, 2
    jlt %r3, 1500, loop
    mov %r4, %r0
    rsh %r4, 16
    and %r0, 0xffff
    add %r0, %r4
    mov %r4, %r0
    rsh %r4, 16
    and %r0, 0xffff
    add %r0, %r4
    xor %r0, 0xffff
    exit
