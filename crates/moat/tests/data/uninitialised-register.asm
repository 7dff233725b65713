# r3 is never written before it is read on the taken path.
# error: UninitRegister
mov %r0, 0
jeq %r1, 0, +1
mov %r3, 1
add %r0, %r3
exit
