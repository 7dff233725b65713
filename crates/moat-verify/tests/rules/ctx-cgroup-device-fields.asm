# rule: a cgroup_device program reads its access type narrowly and major and minor whole, and returns 1 (allow), as the kernel's cgroup_dev_is_valid_access allows.
# context: cgroup-device
# accept
ldxh %r2, [%r1+0]           # 0: access_type (the low half: BPF_DEVCG_ACC_*)
ldxw %r3, [%r1+4]           # 1: major
ldxw %r4, [%r1+8]           # 2: minor
mov %r0, 1                  # 3
exit                        # 4
