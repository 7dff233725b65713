# rule: a lightweight tunnel program may write only mark, priority and cb[] of its __sk_buff; tc_index is read-only.
# context: lwt-xmit
# reject: ReadOnly at 0
stw [%r1+44], 1
mov %r0, 0
exit
