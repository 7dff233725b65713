# rule: no arithmetic on data_end.
# context: xdp
# reject: PointerArithmetic at 2
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
add %r3, -1                 # 2
mov %r0, 0
exit
