# rule: a slot after `lock or` holds unknown data, not the source register (found by the soundness oracle).
# Regression: the verifier believed the slot held r3 (0); it held 40 | 0 = 40, so the load at +34 read
# byte 74 of a 64-byte buffer.
# context: buffer 64
# reject: PointerOffset at 6
mov %r6, %r1                # 0
mov %r3, 0                  # 1
stdw [%r10-96], 40          # 2
lock or [%r10-96], %r3      # 3
ldxdw %r8, [%r10-96]        # 4: an unknown number
mov %r2, %r6                # 5
add %r2, %r8                # 6
ldxb %r5, [%r2+34]          # 7
mov %r0, 0
exit
