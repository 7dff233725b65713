# rule: a jump to itself is an infinite loop.
# context: buffer 8
# reject: InfiniteLoop at 1
mov %r0, 0
ja -1
