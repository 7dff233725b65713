# Overwrites the Runtime value (helper registry, program table) at its address.
# expect: OutOfBounds at 2
lddw %r1, {RUNTIME}
stdw [%r1], 0
mov %r0, 0
exit
