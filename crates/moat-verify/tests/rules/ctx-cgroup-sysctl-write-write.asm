# rule: write of a bpf_sysctl is read-only: a store to it is refused, as the kernel refuses it.
# context: cgroup-sysctl
# reject: ReadOnly at 0
stw [%r1+0], 1
mov %r0, 1
exit
