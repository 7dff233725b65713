# rule: xdp_md fields are loaded whole: a 2-byte load of ingress_ifindex is refused, as the kernel refuses it.
# context: xdp
# reject: BadCtxAccess at 0
ldxh %r0, [%r1+12]
exit
