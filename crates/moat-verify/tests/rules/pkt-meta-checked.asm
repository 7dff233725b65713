# rule: packet metadata proven by a comparison with data is safe to read.
# context: xdp
# accept
ldxw %r2, [%r1+8]           # 0: data_meta
ldxw %r3, [%r1+0]           # 1: data
mov %r4, %r2                # 2
add %r4, 4                  # 3
jgt %r4, %r3, out           # 4
ldxw %r0, [%r2+0]           # 5
exit
out:
mov %r0, 0
exit
