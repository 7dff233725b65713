# rule: an unprivileged program may not store a pointer into the context.
# context: tc
# unprivileged
# reject: PointerLeak at 0
stxw [%r1+8], %r10
mov %r0, 0
exit
