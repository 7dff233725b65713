# rule: a socket filter may write only cb[] of its __sk_buff.
# FIXME: moat accepts this store to `mark` because Context::sk_buff(false) marks mark, queue_mapping, priority, tc_index and tc_classid writable for socket filters and cgroup skb programs too; the kernel's sk_filter_is_valid_access allows writes to cb[0..4] only.
# context: socket
# accept
stw [%r1+8], 1
mov %r0, 0
exit
