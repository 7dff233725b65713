# rule: a loop that returns to an identical state never terminates.
# context: buffer 8
# reject: InfiniteLoop at 2
mov %r0, 0                  # 0
mov %r1, 0                  # 1
again:
jne %r1, 1, again           # 2: r1 stays 0
exit
