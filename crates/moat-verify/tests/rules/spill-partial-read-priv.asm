# rule: a privileged program may read half of a spilled pointer as a number.
# The kernel refuses it for every loader ("invalid size of register fill"): a kernel-specific rule; the read is memory-safe.
# context: buffer 8
# accept
stxdw [%r10-8], %r10
ldxw %r0, [%r10-8]
exit
