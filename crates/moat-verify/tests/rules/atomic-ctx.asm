# rule: atomic operations on the context are refused.
# context: tc
# reject: BadAtomicTarget at 1
mov %r2, 1
lock add32 [%r1+8], %r2
mov %r0, 0
exit
