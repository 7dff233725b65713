# rule: an sk_msg program's sk_msg_md is read-only: a store to family is refused.
# context: sk-msg
# reject: ReadOnly at 0
stw [%r1+16], 2
mov %r0, 1
exit
