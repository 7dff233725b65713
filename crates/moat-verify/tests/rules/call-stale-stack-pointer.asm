# rule: a function may not return a pointer into its own stack frame, which dies with the call.
# FIXME: moat accepts this read through a dangling pointer into the returned function's frame: mem_access/stack_access find no live frame 1 and skip the access (`st.frames.get_mut(frame)` is None → Ok(None)) instead of rejecting it, and exit does not refuse r0 = a callee stack pointer (the kernel: "cannot return stack pointer to the caller").
# context: buffer 8
# accept
call local f                # 0
ldxdw %r0, [%r0-8]          # 1: the callee's stack, after it returned
exit                        # 2
f:
stdw [%r10-8], 7            # 3
mov %r0, %r10               # 4
exit
