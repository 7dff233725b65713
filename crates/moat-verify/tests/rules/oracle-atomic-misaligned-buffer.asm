# rule: an atomic on the buffer context must be aligned to its size (found by the soundness oracle: the interpreter refuses the misaligned access at run time).
# context: buffer 64
# unprivileged
# reject: MisalignedAtomic at 2
mov %r6, %r1                # 0
mov %r5, 0                  # 1
lock fetch add [%r6+49], %r5    # 2
mov %r0, 0
exit
