# rule: an unprivileged program may not negate a pointer.
# context: buffer 8
# unprivileged
# reject: PointerArithmetic at 1
mov %r1, %r10
neg %r1
mov %r0, 0
exit
