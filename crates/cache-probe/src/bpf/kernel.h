/* The few kernel types the probe reads, declared with only the fields it
 * uses. `preserve_access_index` makes every access a CO-RE relocation, so
 * libbpf resolves the real offsets against the running kernel's BTF at load
 * time: no vmlinux.h is generated or committed, and the build needs neither
 * the kernel's BTF nor bpftool. */
#ifndef CACHE_PROBE_KERNEL_H
#define CACHE_PROBE_KERNEL_H

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

/* Starts with a struct sock; inet_sport is the local port in network order. */
struct inet_sock {
	__be16 inet_sport;
} __attribute__((preserve_access_index));

struct task_struct {
	struct task_struct *group_leader;
	char comm[16];
} __attribute__((preserve_access_index));

struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
} __attribute__((preserve_access_index));

struct trace_event_raw_sys_enter {
	struct trace_entry ent;
	long id;
	unsigned long args[6];
} __attribute__((preserve_access_index));

struct trace_event_raw_sys_exit {
	struct trace_entry ent;
	long id;
	long ret;
} __attribute__((preserve_access_index));

/* User-space layouts (the syscall ABI, not kernel internals): no CO-RE. */
struct iovec {
	void *iov_base;
	__u64 iov_len;
};

struct user_msghdr {
	void *msg_name;
	int msg_namelen;
	struct iovec *msg_iov;
	__u64 msg_iovlen;
	void *msg_control;
	__u64 msg_controllen;
	unsigned int msg_flags;
};

#endif
