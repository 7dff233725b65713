# rule: a pointer moved by a variable whose lower bound is near i64::MIN is refused.
# context: buffer 64
# reject: PointerOffset at 4
ldxb %r3, [%r1+0]               # 0: 0..255
lddw %r2, 0x8000000000000000    # 1
add %r3, %r2                    # 3: MIN..MIN+255
add %r1, %r3                    # 4
ldxb %r0, [%r1+0]               # 5
exit
