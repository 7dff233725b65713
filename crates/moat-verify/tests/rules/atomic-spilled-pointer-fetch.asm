# rule: a privileged fetching atomic on a whole spilled pointer yields the pointer (the old value), as in the kernel.
# context: buffer 8
# accept
stdw [%r10-16], 0           # 0
stxdw [%r10-8], %r10        # 1
mov %r2, 0                  # 2
lock fetch add [%r10-8], %r2    # 3: r2 = fp
ldxdw %r0, [%r2-16]         # 4
exit
