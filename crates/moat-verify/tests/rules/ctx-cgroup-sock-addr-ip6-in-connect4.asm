# rule: an IPv4 hook (connect4) may not touch user_ip6 of its bpf_sock_addr: the kernel refuses the access.
# context: cgroup-sock-addr connect4
# reject: BadCtxAccess at 0
ldxw %r0, [%r1+8]
mov %r0, 1
exit
