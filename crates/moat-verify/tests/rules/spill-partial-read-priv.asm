# rule: no loader may read part of a spilled pointer, not even a privileged one (the kernel: "invalid size of register fill").
# context: buffer 8
# reject: PartialPointerRead at 1
stxdw [%r10-8], %r10
ldxw %r0, [%r10-8]
exit
