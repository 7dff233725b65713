# rule: a sock_ops program reads its __u32 fields whole: a 2-byte load of op is refused, as the kernel refuses it.
# context: sock-ops
# reject: BadCtxAccess at 0
ldxh %r0, [%r1+0]
mov %r0, 1
exit
