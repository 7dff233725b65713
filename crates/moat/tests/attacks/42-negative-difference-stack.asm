# Issue 21, root cause 3: a pointer difference that is negative (here: the context minus its end), shifted into -1 and scaled into a stack offset far above the frame.
# expect: OutOfBounds at 10
mov %r3, %r1
add %r3, %r2
mov %r4, %r1
sub %r4, %r3
arsh %r4, 63
mul %r4, -4104
mov %r5, %r10
add %r5, %r4
mov %r0, 0
mov %r6, 0
stxdw [%r5-8], %r6
exit
