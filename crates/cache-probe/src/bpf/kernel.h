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

/* The registers a syscall was entered with (bpf_task_pt_regs): its number
 * and arguments, per architecture, with the syscalls the probe follows. */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));
/* Direct loads: bpf_task_pt_regs gives a BTF pointer, which the verifier
 * lets a program read without a helper call. */
#define SYSCALL_NR(regs) ((long)(regs)->orig_ax)
#define SYSCALL_ARG2(regs) ((__u64)(regs)->si)
#define SYSCALL_ARG3(regs) ((__u64)(regs)->dx)
#define SYS_read 0
#define SYS_write 1
#define SYS_readv 19
#define SYS_writev 20
#define SYS_sendto 44
#define SYS_recvfrom 45
#define SYS_sendmsg 46
#define SYS_recvmsg 47
#elif defined(__TARGET_ARCH_arm64)
struct pt_regs {
	__u64 regs[31];
	__s32 syscallno;
} __attribute__((preserve_access_index));
#define SYSCALL_NR(regs) ((long)(regs)->syscallno)
#define SYSCALL_ARG2(regs) ((__u64)(regs)->regs[1])
#define SYSCALL_ARG3(regs) ((__u64)(regs)->regs[2])
#define SYS_read 63
#define SYS_write 64
#define SYS_readv 65
#define SYS_writev 66
#define SYS_sendto 206
#define SYS_recvfrom 207
#define SYS_sendmsg 211
#define SYS_recvmsg 212
#else
#error "cache-probe: unsupported architecture"
#endif

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
