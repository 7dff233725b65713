# rule: an unprivileged program may not add a pointer to memory with an atomic operation.
# context: buffer 8
# unprivileged
# reject: PointerLeak at 1
stdw [%r10-8], 0
lock add [%r10-8], %r10
mov %r0, 0
exit
