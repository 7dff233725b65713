# rule: metadata proven to exist may be written where the packet may be (XDP): a store after the check is accepted.
# context: xdp
# accept
ldxw %r2, [%r1+8]           # 0: data_meta
ldxw %r3, [%r1+0]           # 1: data
mov %r4, %r2                # 2
add %r4, 4                  # 3
jgt %r4, %r3, out           # 4
stw [%r2+0], 7              # 5
out:
mov %r0, 2                  # 6
exit                        # 7
