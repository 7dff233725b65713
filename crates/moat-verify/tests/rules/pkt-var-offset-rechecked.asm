# rule: a packet pointer moved by a bounded variable amount and checked again is safe (twin of pkt-var-offset-unchecked).
# context: xdp
# accept
ldxw %r2, [%r1+0]           # 0: data
ldxw %r3, [%r1+4]           # 1: data_end
mov %r4, %r2                # 2
add %r4, 14                 # 3
jgt %r4, %r3, out           # 4
ldxb %r5, [%r2+0]           # 5: 0..255
add %r2, %r5                # 6
mov %r4, %r2                # 7
add %r4, 1                  # 8
jgt %r4, %r3, out           # 9
ldxb %r0, [%r2+0]           # 10
exit
out:
mov %r0, 0
exit
