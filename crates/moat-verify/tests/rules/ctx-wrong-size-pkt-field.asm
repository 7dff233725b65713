# rule: the packet pointer fields of the context can only be loaded whole (4 bytes).
# context: xdp
# reject: BadCtxAccess at 0
ldxh %r2, [%r1+0]
mov %r0, 0
exit
