# rule: a pointer spills only as 8 bytes at an 8-aligned stack offset; a misaligned spill would read back as a number holding the address (found by the verified-JIT oracle)
# reject: MisalignedPointerSpill at 0
stxdw [%r10-12], %r10
lock fetch add32 [%r10-12], %r2
ldxw %r0, [%r10-12]
exit
