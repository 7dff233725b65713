# rule: subtracting a pointer from a number is prohibited.
# context: buffer 8
# reject: PointerArithmetic at 1
mov %r1, 8
sub %r1, %r10
mov %r0, 0
exit
