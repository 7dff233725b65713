# rule: adding two pointers is prohibited.
# context: buffer 8
# reject: PointerArithmetic at 1
mov %r1, %r10
add %r1, %r10
mov %r0, 0
exit
