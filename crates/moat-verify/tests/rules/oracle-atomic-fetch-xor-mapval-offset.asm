# rule: a slot after `lock fetch xor` holds unknown data, so it cannot move a map value pointer (found by the soundness oracle, unprivileged).
# Regression: the verifier believed the slot held r5 (0); it held 512, so the store at +36 wrote byte 548
# of a 48-byte value.
# context: buffer 64
# map: values array 4 48 4
# unprivileged
# reject: PointerOffset at 14
mov %r9, 0                  # 0
mov %r2, %r10               # 1
stxdw [%r10-8], %r9         # 2: key 0
add %r2, -4                 # 3
lddw %r1, map_idx(0)        # 4
call 1                      # 6
mov %r5, 0                  # 7
jeq %r0, 0, out             # 8
mov %r7, %r0                # 9
stdw [%r10-24], 512         # 10
lock fetch xor [%r10-24], %r5   # 11
ldxdw %r8, [%r10-24]        # 12: an unknown number
mov %r3, %r7                # 13
add %r3, %r8                # 14
stb [%r3+36], -1            # 15
out:
mov %r0, 0
exit
