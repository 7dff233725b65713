# rule: an unprivileged program may not read part of a spilled pointer.
# context: buffer 8
# unprivileged
# reject: PartialPointerRead at 1
stxdw [%r10-8], %r10
ldxw %r0, [%r10-8]
exit
