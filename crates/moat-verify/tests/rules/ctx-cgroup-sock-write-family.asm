# rule: a cgroup_sock program may write only bound_dev_if, mark and priority; family is read-only.
# context: cgroup-sock
# reject: ReadOnly at 0
stw [%r1+4], 2
mov %r0, 1
exit
