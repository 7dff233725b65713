# rule: a stack pointer moved below the frame by arithmetic cannot be dereferenced.
# context: buffer 8
# reject: OutOfBounds at 2
mov %r1, %r10
add %r1, -600
stb [%r1+0], 0
mov %r0, 0
exit
