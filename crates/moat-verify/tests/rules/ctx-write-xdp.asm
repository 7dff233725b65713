# rule: xdp_md is read-only: a store to ingress_ifindex is refused.
# context: xdp
# reject: ReadOnly at 0
stw [%r1+12], 0
mov %r0, 0
exit
