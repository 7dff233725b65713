# rule: `lock fetch and` on a stack slot leaves unknown data in it (the kernel's STACK_MISC), not the source register's value, so the slot cannot be used as a known offset.
# Regression: the verifier modelled atomics as plain stores of the source register, so it believed
# the slot held -1 (an access at fp-9); the slot really holds 4096, so the access is at fp+4088.
# context: buffer 8
# reject: PointerOffset at 5
stdw [%r10-8], 4096           # 0
mov %r2, -1                   # 1
lock fetch and [%r10-8], %r2  # 2: the slot: unknown data
ldxdw %r3, [%r10-8]           # 3: an unknown number
mov %r1, %r10                 # 4
add %r1, %r3                  # 5: refused: the offset has no lower bound
ldxdw %r0, [%r1-8]            # 6
exit                          # 7
