# expect: raised reduce.add.2.be r1, r0
# The example's checksum loop (examples/asm/checksum.s): a pointer that advances (`r1 += 2`) and a
# length that counts down (`r2 -= 2`) to the header's exit test; both are live after the loop.
    mov %r0, 0
loop:
    jlt %r2, 2, tail
    ldxh %r3, [%r1]
    be16 %r3
    add %r0, %r3
    add %r1, 2
    sub %r2, 2
    ja loop
tail:
    jeq %r2, 0, fold
    ldxb %r3, [%r1]
    lsh %r3, 8
    add %r0, %r3
fold:
    mov %r3, %r0
    rsh %r3, 16
    and %r0, 0xffff
    add %r0, %r3
    exit
