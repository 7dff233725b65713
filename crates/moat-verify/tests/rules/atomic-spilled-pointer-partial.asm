# rule: a 4-byte atomic on part of a spilled pointer is refused for every loader, as in the kernel ("invalid size of register fill").
# context: buffer 8
# reject: PartialPointerRead at 2
stxdw [%r10-8], %r10        # 0
mov %r2, 1                  # 1
lock add32 [%r10-8], %r2    # 2
mov %r0, 0
exit
