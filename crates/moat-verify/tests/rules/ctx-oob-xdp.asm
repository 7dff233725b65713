# rule: a context load past the end of struct xdp_md (24 bytes) is refused.
# context: xdp
# reject: BadCtxAccess at 0
ldxw %r0, [%r1+24]
exit
