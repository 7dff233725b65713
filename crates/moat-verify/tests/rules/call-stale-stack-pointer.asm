# rule: a function may not return a pointer into its own stack frame, which dies with the call.
# context: buffer 8
# reject: OutOfBounds at 1
call local f                # 0
ldxdw %r0, [%r0-8]          # 1: the callee's stack, after it returned
exit                        # 2
f:
stdw [%r10-8], 7            # 3
mov %r0, %r10               # 4
exit
