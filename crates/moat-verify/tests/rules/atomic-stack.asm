# rule: an atomic add on initialised stack is fine (twin of atomic-packet).
# context: buffer 8
# accept
stdw [%r10-8], 0
mov %r1, 1
lock add [%r10-8], %r1
ldxdw %r0, [%r10-8]
exit
