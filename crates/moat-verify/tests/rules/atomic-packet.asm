# rule: atomic operations on packet memory are refused.
# context: xdp
# reject: BadAtomicTarget at 6
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
mov %r4, %r2                # 2
add %r4, 8                  # 3
jgt %r4, %r3, out           # 4
mov %r5, 1                  # 5
lock add [%r2+0], %r5       # 6
out:
mov %r0, 0
exit
