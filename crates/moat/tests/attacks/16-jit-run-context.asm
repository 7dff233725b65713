# Overwrites the word right above its stack (the JIT's run context: budget, saved rsp) at a constant r10 offset.
# expect: OutOfBounds at 0
stdw [%r10+8], 0
mov %r0, 0
exit
