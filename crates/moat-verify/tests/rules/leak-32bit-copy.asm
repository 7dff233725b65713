# rule: an unprivileged program may not copy half of a pointer into a number.
# context: buffer 8
# unprivileged
# reject: PointerLeak at 0
mov32 %r0, %r10
exit
