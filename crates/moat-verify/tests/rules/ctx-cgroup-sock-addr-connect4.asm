# rule: a connect4 program reads user_ip4 (narrowly too) and family, and rewrites user_ip4 and user_port of its bpf_sock_addr, as the kernel's sock_addr_is_valid_access allows.
# context: cgroup-sock-addr connect4
# accept
ldxw %r2, [%r1+4]           # 0: user_ip4
ldxb %r3, [%r1+4]           # 1: its first byte
ldxw %r4, [%r1+28]          # 2: family
stxw [%r1+4], %r2           # 3: user_ip4
stw [%r1+24], 8080          # 4: user_port
mov %r0, 1                  # 5
exit                        # 6
