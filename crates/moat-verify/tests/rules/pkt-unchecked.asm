# rule: a packet load needs a comparison with data_end first.
# context: xdp
# reject: PacketOutOfBounds at 2
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
ldxb %r0, [%r2+0]           # 2
exit
