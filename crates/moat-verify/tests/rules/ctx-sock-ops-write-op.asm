# rule: a sock_ops program may write only reply and sk_txhash of its bpf_sock_ops; op is read-only.
# context: sock-ops
# reject: ReadOnly at 0
stw [%r1+0], 1
mov %r0, 1
exit
