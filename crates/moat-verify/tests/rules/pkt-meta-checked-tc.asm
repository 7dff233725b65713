# rule: a tc program reads __sk_buff's data_meta and may use the metadata a comparison with data proves.
# context: tc
# accept
ldxw %r2, [%r1+140]         # 0: data_meta
ldxw %r3, [%r1+76]          # 1: data
mov %r4, %r2                # 2
add %r4, 4                  # 3
jgt %r4, %r3, out           # 4
ldxw %r0, [%r2+0]           # 5
and %r0, 0                  # 6
exit                        # 7
out:
mov %r0, 0                  # 8
exit                        # 9
