# rule: packet metadata may be read only as far as a comparison with data proved it exists: 8 bytes read after proving 4 are refused.
# context: xdp
# reject: OutOfBounds at 5
ldxw %r2, [%r1+8]           # 0: data_meta
ldxw %r3, [%r1+0]           # 1: data
mov %r4, %r2                # 2
add %r4, 4                  # 3
jgt %r4, %r3, out           # 4
ldxdw %r0, [%r2+0]          # 5: 8 bytes, 4 proven
exit                        # 6
out:
mov %r0, 0                  # 7
exit                        # 8
