# rule: multiplying a pointer is prohibited.
# context: buffer 8
# reject: PointerArithmetic at 1
mov %r1, %r10
mul %r1, 2
mov %r0, 0
exit
