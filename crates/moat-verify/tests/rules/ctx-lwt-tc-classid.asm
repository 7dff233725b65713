# rule: tc_classid of a __sk_buff is not part of a lightweight tunnel program's context: the kernel refuses the access.
# context: lwt-in
# reject: BadCtxAccess at 0
ldxw %r0, [%r1+72]
mov %r0, 0
exit
