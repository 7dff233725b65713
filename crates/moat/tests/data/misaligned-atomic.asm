# Atomics must be naturally aligned.
# error: BadAtomic at 2
mov %r1, 1
stxdw [%r10-16], %r1
lock add [%r10-12], %r1
mov %r0, 0
exit
