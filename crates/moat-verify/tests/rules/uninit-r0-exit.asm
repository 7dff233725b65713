# rule: r0 must be written on every path before exit (found by Program::new's structural check).
# context: buffer 8
# reject: UninitRegister at 3
ldxb %r2, [%r1+0]
jeq %r2, 0, +1
mov %r0, 1
exit
