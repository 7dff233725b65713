# rule: a spilled pointer read back whole is the pointer again (the safe twin of spill-partial-read-priv).
# context: buffer 8
# accept
stxdw [%r10-8], %r10        # 0
ldxdw %r1, [%r10-8]         # 1: fp again
stdw [%r1-16], 5            # 2: a store through it
mov %r0, 0                  # 3
exit                        # 4
