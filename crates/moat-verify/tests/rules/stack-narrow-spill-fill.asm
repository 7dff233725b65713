# rule: a number stored into the low 4 bytes of a stack slot reads back exactly with a 4-byte fill from the same place (the kernel's narrow spills), so a branch on it is decided and the path that reads past the context is never taken.
# FIXME: moat keeps only 8-byte spills: the 4-byte store leaves plain data, the fill reads an unknown number and the out-of-bounds path is explored and refused; the kernel accepts (real instance: cilium-core/bpf_lxc.o's tail_nodeport_nat_egress_ipv4). Tracking narrow spills made Cilium programs too complex for moat's static precision analysis, which cannot tell which spilled numbers matter path by path as the kernel's backtracking does.
# context: buffer 8
# reject: OutOfBounds at 4
stw [%r10-8], 1             # 0: a narrow spill of 1
ldxw %r3, [%r10-8]          # 1: fills 1 in the kernel
mov %r0, 0                  # 2
jeq %r3, 1, +1              # 3: always taken in the kernel
ldxb %r0, [%r1+100]         # 4: out of bounds
exit
