# rule: an unprivileged program may not change a spilled pointer with an atomic operation (the kernel: "leaking pointer from stack").
# Regression: the atomic was a plain store of r2, so the slot read back as the number 8 while it held fp+8.
# context: buffer 8
# unprivileged
# reject: PointerLeak at 2
stxdw [%r10-8], %r10        # 0
mov %r2, 8                  # 1
lock add [%r10-8], %r2      # 2
ldxdw %r0, [%r10-8]         # 3
exit
