# rule: packet memory passed to a helper must be proven against data_end.
# context: xdp
# map: values hash 4 8 16
# reject: PacketOutOfBounds at 3
ldxw %r2, [%r1+0]           # 0: data
lddw %r1, map_idx(0)        # 1
call 1                      # 3
mov %r0, 0
exit
