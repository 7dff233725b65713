# rule: a packet load within the range proven against data_end is safe (twin of pkt-one-past-check).
# context: xdp
# accept
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
mov %r4, %r2                # 2
add %r4, 14                 # 3
jgt %r4, %r3, out           # 4
ldxb %r0, [%r2+13]          # 5
exit
out:
mov %r0, 0
exit
