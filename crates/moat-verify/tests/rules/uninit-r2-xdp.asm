# rule: only r1 and r10 are set at entry of a context program.
# context: xdp
# reject: UninitRegister at 0
mov %r0, %r2
exit
