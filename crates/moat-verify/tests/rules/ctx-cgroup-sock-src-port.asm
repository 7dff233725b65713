# rule: src_port of a bpf_sock is readable only in post_bind programs: at socket creation the kernel refuses the load.
# context: cgroup-sock
# reject: BadCtxAccess at 0
ldxw %r0, [%r1+44]
mov %r0, 1
exit
