# rule: a packet bounds check proves nothing on the branch where the packet is too short.
# context: xdp
# reject: PacketOutOfBounds at 7
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
mov %r4, %r2                # 2
add %r4, 1                  # 3
jgt %r4, %r3, short         # 4
mov %r0, 0                  # 5
exit                        # 6
short:
ldxb %r0, [%r2+0]           # 7
exit
