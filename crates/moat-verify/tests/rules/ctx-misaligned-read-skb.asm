# rule: a context load must be aligned to its size: 2 bytes at __sk_buff offset 17 are refused.
# context: tc
# reject: BadCtxAccess at 0
ldxh %r0, [%r1+17]          # 0
exit                        # 1
