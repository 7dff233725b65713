# rule: a pointer moved by a constant beyond 2^29 is refused, as by the kernel's check_reg_sane_offset.
# Regression: constant offsets wrapped and access bounds saturated, so offsets near i64::MAX let an
# access outside the frame be proven.
# context: buffer 8
# reject: PointerOffset at 3
lddw %r2, 0x7fffffffffffffff    # 0
mov %r1, %r10                   # 2
add %r1, %r2                    # 3
ldxb %r0, [%r1+0]               # 4
exit
