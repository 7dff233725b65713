# rule: a context load that straddles two fields is refused.
# context: xdp
# reject: BadCtxAccess at 0
ldxw %r0, [%r1+2]
exit
