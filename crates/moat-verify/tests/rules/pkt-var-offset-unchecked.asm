# rule: a packet pointer moved by a variable amount must be checked against data_end again.
# context: xdp
# reject: PacketOutOfBounds at 7
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
mov %r4, %r2                # 2
add %r4, 14                 # 3
jgt %r4, %r3, out           # 4
ldxb %r5, [%r2+0]           # 5: 0..255
add %r2, %r5                # 6
ldxb %r0, [%r2+0]           # 7
exit
out:
mov %r0, 0
exit
