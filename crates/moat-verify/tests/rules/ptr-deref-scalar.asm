# rule: a number is not a pointer: loading through it is refused.
# context: buffer 8
# reject: NotAPointer at 1
mov %r1, 4096
ldxb %r0, [%r1+0]
exit
