# rule: 32-bit arithmetic on a pointer is prohibited.
# context: buffer 8
# reject: PointerArithmetic at 1
mov %r1, %r10
add32 %r1, 4
mov %r0, 0
exit
