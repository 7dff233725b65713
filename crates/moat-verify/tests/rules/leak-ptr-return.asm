# rule: an unprivileged program may not return a pointer.
# context: buffer 8
# unprivileged
# reject: PointerLeak at 1
mov %r0, %r10
exit
