# rule: user_family of a bpf_sock_addr is read-only.
# context: cgroup-sock-addr connect6
# reject: ReadOnly at 0
stw [%r1+0], 2
mov %r0, 1
exit
