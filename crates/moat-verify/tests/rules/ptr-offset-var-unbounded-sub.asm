# rule: subtracting a variable without an upper bound leaves the pointer without a lower bound: refused.
# context: buffer 64
# reject: PointerOffset at 3
ldxdw %r3, [%r1+0]              # 0: any number
rsh %r3, 1                      # 1: 0..2^63-1
mov %r2, %r1                    # 2
sub %r2, %r3                    # 3: refused
ldxb %r0, [%r2+0]               # 4
exit
