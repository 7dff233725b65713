# rule: `lock cmpxchg` on a stack slot leaves unknown data in it (the kernel's STACK_MISC), not the source register's value, so the slot cannot be used as a known offset.
# Regression: the verifier modelled atomics as plain stores of the source register, so it believed
# the slot held -8 (an access at fp-16); r0 (0) differs from the slot (4096), so nothing is exchanged and the slot still holds 4096, so the access is at fp+4088.
# context: buffer 8
# reject: PointerOffset at 6
stdw [%r10-8], 4096         # 0
mov %r2, -8                 # 1
mov %r0, 0                  # 2
lock cmpxchg [%r10-8], %r2  # 3: the slot: unknown data
ldxdw %r3, [%r10-8]         # 4: an unknown number
mov %r1, %r10               # 5
add %r1, %r3                # 6: refused: the offset has no lower bound
ldxdw %r0, [%r1-8]          # 7
exit                        # 8
