# rule: packet metadata needs a comparison with data before it is read.
# context: xdp
# reject: OutOfBounds at 1
ldxw %r2, [%r1+8]           # 0: data_meta
ldxb %r0, [%r2+0]           # 1
exit
