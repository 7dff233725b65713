# rule: a packet load one byte past the range proven against data_end is refused.
# context: xdp
# reject: PacketOutOfBounds at 5
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
mov %r4, %r2                # 2
add %r4, 14                 # 3
jgt %r4, %r3, out           # 4
ldxb %r0, [%r2+14]          # 5: bytes 0..14 proven
exit
out:
mov %r0, 0
exit
