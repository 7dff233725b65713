# rule: a cgroup_sock program at socket creation reads family whole and dst_port narrowly and writes mark and priority of its bpf_sock, as the kernel's sock_filter_is_valid_access allows.
# context: cgroup-sock
# accept
ldxw %r2, [%r1+4]           # 0: family
ldxh %r3, [%r1+48]          # 1: dst_port
stxw [%r1+16], %r3          # 2: mark
stw [%r1+20], 7             # 3: priority
mov %r0, 1                  # 4
exit                        # 5
