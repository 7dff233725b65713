# rule: xor on a pointer is prohibited.
# context: buffer 8
# reject: PointerArithmetic at 1
mov %r1, %r10
xor %r1, 1
mov %r0, 0
exit
