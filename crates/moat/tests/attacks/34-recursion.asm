# Unbounded recursion through local calls.
# expect: CallDepth at 3
mov %r0, 0
call local f
exit
f:
call local f
exit
