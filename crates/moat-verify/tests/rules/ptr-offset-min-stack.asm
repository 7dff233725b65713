# rule: a pointer moved back by i64::MIN is refused (the scalar is beyond 2^29 in magnitude).
# context: buffer 8
# reject: PointerOffset at 3
lddw %r2, 0x8000000000000000    # 0
mov %r1, %r10                   # 2
sub %r1, %r2                    # 3
ldxb %r0, [%r1+0]               # 4
exit
