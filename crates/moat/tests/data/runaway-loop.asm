# An infinite loop ends when the instruction budget runs out.
# budget: 10000
# error: Budget at 1
mov %r0, 0
ja -1
exit
