# rule: a cgroup_device program's context is read-only.
# context: cgroup-device
# reject: ReadOnly at 0
stw [%r1+4], 1
mov %r0, 1
exit
