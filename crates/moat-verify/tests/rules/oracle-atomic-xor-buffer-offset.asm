# rule: a slot after `lock xor` holds unknown data, not the source register, so it cannot move a buffer pointer (found by the soundness oracle, crates/moat/tests/verifier_soundness.rs).
# Regression: the verifier believed the slot held r0 (0); it still held -82, so the store landed 68
# bytes before the buffer.
# context: buffer 64
# reject: PointerOffset at 6
mov %r6, %r1                # 0
mov %r0, 0                  # 1
stdw [%r10-8], -82          # 2
lock xor [%r10-8], %r0      # 3
ldxdw %r9, [%r10-8]         # 4: an unknown number
mov %r8, %r6                # 5
add %r8, %r9                # 6
sth [%r8+14], 0             # 7
exit
