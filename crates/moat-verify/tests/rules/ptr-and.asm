# rule: masking a pointer with and is prohibited.
# context: buffer 8
# reject: PointerArithmetic at 1
mov %r1, %r10
and %r1, 0xff
mov %r0, 0
exit
