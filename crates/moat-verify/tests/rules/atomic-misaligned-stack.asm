# rule: an atomic operation must be aligned to its size (the engines refuse misaligned atomics at run time; the kernel refuses them too).
# context: buffer 8
# reject: MisalignedAtomic at 2
stdw [%r10-8], 0            # 0
mov %r2, 1                  # 1
lock add32 [%r10-6], %r2    # 2
mov %r0, 0
exit
