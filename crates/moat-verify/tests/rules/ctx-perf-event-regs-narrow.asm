# rule: a perf_event program reads the sampled registers of struct bpf_perf_event_data only whole (the kernel's pe_prog_is_valid_access: size == sizeof(long)).
# context: perf-event
# reject: BadCtxAccess at 0
ldxw %r0, [%r1+16]
exit
