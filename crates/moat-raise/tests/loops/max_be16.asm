# expect: not raised: control flow inside the body
# The largest big-endian 16-bit word among the first 16 bytes at r1. (16: the verifier walks each path of the branch.) Not raisable as written
# (the maximum takes a branch inside the body); kept as a loop the IR must leave alone.
    mov %r0, 0
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxh %r5, [%r4]
    be16 %r5
    jge %r0, %r5, skip
    mov %r0, %r5
skip:
    add %r3, 2
    jlt %r3, 16, loop
    exit
