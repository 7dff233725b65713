# rule: data of an sk_msg_md is an 8-byte pointer: a 4-byte load of it is refused, as the kernel refuses it.
# context: sk-msg
# reject: BadCtxAccess at 0
ldxw %r0, [%r1+0]
mov %r0, 1
exit
