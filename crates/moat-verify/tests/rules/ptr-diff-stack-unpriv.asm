# rule: an unprivileged program may not subtract stack pointers, as in the kernel.
# context: buffer 8
# unprivileged
# reject: PointerArithmetic at 3
mov %r1, %r10               # 0
add %r1, -8                 # 1
mov %r0, %r10               # 2
sub %r0, %r1                # 3
exit
