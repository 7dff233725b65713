# rule: a sock_ops program reads its __u32 fields whole and bytes_received as 8 bytes, and writes reply (args[0]), as the kernel's sock_ops_is_valid_access allows.
# context: sock-ops
# accept
ldxw %r2, [%r1+0]           # 0: op
ldxw %r3, [%r1+64]          # 1: remote_port
ldxdw %r4, [%r1+168]        # 2: bytes_received
stxw [%r1+4], %r3           # 3: reply
mov %r0, 1                  # 4
exit                        # 5
