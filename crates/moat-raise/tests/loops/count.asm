# expect: not raised: control flow inside the body
# Counts the bytes equal to 'a' among the first 64 bytes at r1. Not raised: the conditional increment is
# control flow inside the body, which the loop IR does not express (no select in eBPF).
    mov %r0, 0
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    jne %r5, 0x61, skip
    add %r0, 1
skip:
    add %r3, 1
    jlt %r3, 64, loop
out:
    exit
