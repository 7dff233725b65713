# rule: an unprivileged program may not compare pointers.
# context: buffer 8
# unprivileged
# reject: PointerComparison at 1
mov %r0, 0
jeq %r1, %r10, +0
exit
