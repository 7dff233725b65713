# An infinite loop, unverified: the instruction budget stops it.
# expect: Budget at 1
mov %r0, 0
ja -1
exit
