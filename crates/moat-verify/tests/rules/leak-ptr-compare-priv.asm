# rule: a privileged program may compare pointers (twin of leak-ptr-compare).
# context: buffer 8
# accept
mov %r0, 0
jeq %r1, %r10, +1
mov %r0, 1
exit
