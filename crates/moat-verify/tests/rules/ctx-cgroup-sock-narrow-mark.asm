# rule: mark of a bpf_sock is read whole: a 2-byte load is refused, as the kernel refuses it.
# context: cgroup-sock
# reject: BadCtxAccess at 0
ldxh %r0, [%r1+16]
mov %r0, 1
exit
