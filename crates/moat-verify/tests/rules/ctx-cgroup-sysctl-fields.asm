# rule: a cgroup_sysctl program reads write narrowly and file_pos whole, and writes file_pos, as the kernel's sysctl_is_valid_access allows.
# context: cgroup-sysctl
# accept
ldxb %r2, [%r1+0]           # 0: write
ldxw %r3, [%r1+4]           # 1: file_pos
stw [%r1+4], 0              # 2: file_pos
mov %r0, 1                  # 3
exit                        # 4
