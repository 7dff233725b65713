# expect: raised first_diff_nul.1 r1+r3+750, r1+r3
# strcmp in the style of the bpf-benchmark suite: compares the NUL-terminated string at r1 with the
# one 750 bytes further (two equal 700-character strings), byte by byte. Result: 0 (equal).
    mov %r3, 0
loop:
    mov %r4, %r1
    add %r4, %r3
    ldxb %r5, [%r4]
    ldxb %r6, [%r4+750]
    jne %r5, %r6, diff
    jeq %r5, 0, same
    add %r3, 1
    jlt %r3, 749, loop
same:
    mov %r0, 0
    exit
diff:
    mov %r0, %r5
    sub %r0, %r6
    exit
