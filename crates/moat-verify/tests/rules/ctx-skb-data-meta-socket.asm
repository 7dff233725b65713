# rule: socket filters have no data_meta: __sk_buff offset 140 is refused outside tc.
# context: socket
# reject: BadCtxAccess at 0
ldxw %r2, [%r1+140]         # 0
mov %r0, 0                  # 1
exit                        # 2
