# rule: an offset near i64::MAX is refused before a variable part can hide it.
# Regression: the constant offset MAX-100 plus the instruction's +1000 saturated to i64::MAX, and a
# variable part in [-MAX, 63-MAX] brought the computed range back to bytes 0..64 of the buffer; the
# access really touched bytes 900..964.
# context: buffer 64
# reject: PointerOffset at 4
ldxb %r3, [%r1+0]               # 0
and %r3, 63                     # 1: 0..63
lddw %r2, 0x7fffffffffffff9b    # 2: i64::MAX - 100
add %r1, %r2                    # 4: refused
lddw %r4, 0x7fffffffffffffff    # 5
sub %r3, %r4                    # 7: -MAX..63-MAX
add %r1, %r3                    # 8
ldxb %r0, [%r1+1000]            # 9
exit
