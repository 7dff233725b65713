# rule: constant offsets accumulate and are refused once they reach 2^29, even when each step is small.
# context: buffer 8
# reject: PointerOffset at 2
mov %r1, %r10                   # 0
add %r1, 0x10000000             # 1: fp+2^28
add %r1, 0x10000000             # 2: fp+2^29, refused
ldxb %r0, [%r1+0]
exit
