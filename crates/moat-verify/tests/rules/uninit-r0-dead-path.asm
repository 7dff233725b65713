# rule: an uninitialised read on a path no execution takes is harmless.
# FIXME: moat rejects this safe program: Program::new's must-be-initialised analysis is path-insensitive, so it refuses r0 at 2 although r2 is the constant buffer size 8 and the jump that skips `mov %r0, 1` is never taken; the kernel's path-sensitive check accepts it (real programs hit this too: cilium-core/bpf_xdp.o's cil_xdp_entry and tail_nodeport_nat_ingress_ipv6).
# context: buffer 8
# reject: Program::UninitRegister at 2
jeq %r2, 0, +1
mov %r0, 1
exit
