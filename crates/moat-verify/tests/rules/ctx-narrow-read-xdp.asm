# rule: a 2-byte load of a scalar xdp_md field (ingress_ifindex) is a safe read of the context.
# The kernel refuses it (xdp_md fields are 4-byte only): a kernel-specific rule moat does not copy.
# context: xdp
# accept
ldxh %r0, [%r1+12]
exit
