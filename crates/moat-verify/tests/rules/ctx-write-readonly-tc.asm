# rule: a store to a read-only __sk_buff field (len) is refused.
# context: tc
# reject: ReadOnly at 0
stw [%r1+0], 1
mov %r0, 0
exit
