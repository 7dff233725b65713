# rule: data_end is not dereferenceable.
# context: xdp
# reject: OutOfBounds at 2
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
ldxb %r0, [%r3+0]           # 2
exit
