# rule: bpf_skb_load_bytes is offered to tc programs (the safe twin of helper-unavailable-for-type).
# context: tc
# accept
mov %r2, 0                  # 0
mov %r3, %r10               # 1
add %r3, -8                 # 2
mov %r4, 8                  # 3
call 26                     # 4: bpf_skb_load_bytes
mov %r0, 0                  # 5
exit                        # 6
