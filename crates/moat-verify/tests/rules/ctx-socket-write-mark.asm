# rule: a socket filter may write only cb[] of its __sk_buff.
# context: socket
# reject: ReadOnly at 0
stw [%r1+8], 1
mov %r0, 0
exit
