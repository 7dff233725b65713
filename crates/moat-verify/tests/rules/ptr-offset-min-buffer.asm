# rule: a buffer pointer moved by i64::MIN is refused.
# context: buffer 64
# reject: PointerOffset at 2
lddw %r2, 0x8000000000000000    # 0
add %r1, %r2                    # 2
ldxb %r0, [%r1+0]               # 3
exit
