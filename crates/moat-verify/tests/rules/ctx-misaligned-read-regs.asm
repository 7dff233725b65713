# rule: a tracing context (pt_regs) load must be aligned to its size: 4 bytes at offset 2 are refused, 4 bytes at offset 4 allowed elsewhere.
# context: tracing
# reject: BadCtxAccess at 1
ldxw %r0, [%r1+4]           # 0: aligned, narrow: fine
ldxw %r0, [%r1+2]           # 1: misaligned
exit                        # 2
