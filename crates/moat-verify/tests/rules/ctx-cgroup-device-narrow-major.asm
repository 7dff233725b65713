# rule: major of a bpf_cgroup_dev_ctx is read whole: a 2-byte load is refused, as the kernel refuses it.
# context: cgroup-device
# reject: BadCtxAccess at 0
ldxh %r0, [%r1+4]
mov %r0, 1
exit
