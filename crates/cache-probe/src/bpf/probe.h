/* The ABI between the kernel programs (probe.bpf.c) and the Rust side
 * (src/ebpf.rs): every structure that crosses the ring buffer or lives in a
 * map read by both is defined here, once. Rust mirrors these layouts with
 * #[repr(C)] types checked against their sizes at compile time. */
#ifndef CACHE_PROBE_H
#define CACHE_PROBE_H

/* Payload bytes per ring-buffer record (a power of two). A syscall that
 * moved more is copied into several records, in order, each with the offset
 * of its first byte in the syscall. */
#define MAX_CAPTURE 16384
/* Records per syscall: up to MAX_RECORDS * MAX_CAPTURE bytes (1 MiB) of one
 * syscall are captured. A syscall that moved more is reported with its full
 * length, so the reader knows how many bytes it did not see (a gap it skips
 * when it falls inside a bulk string, whose length it knows). */
#define MAX_RECORDS 64
#define MAX_SYSCALL_CAPTURE (MAX_RECORDS * MAX_CAPTURE)
/* A syscall of at most BATCHED_CAPTURE bytes from one buffer (most
 * commands and replies, and deep pipelines of them) is not handed over on
 * its own: its record is added to its CPU's batch, and a batch is handed
 * over whole when the next record would not fit in BATCH_SIZE bytes, or
 * when user space flushes it (the flush_batch program, run on that CPU).
 * A ring buffer record is therefore a sequence of records, each an
 * event_header and its captured bytes, padded to 8 bytes. */
#define BATCH_SIZE 16384
#define BATCHED_CAPTURE 4096
/* Records are padded to this. */
#define RECORD_ALIGN 8
/* Most iovec entries read for writev/readv/sendmsg/recvmsg (IOV_MAX). */
#define MAX_IOVECS 1024
/* Most Redis server ports to watch. */
#define MAX_PORTS 16

enum direction {
	DIR_SEND = 1,
	DIR_RECV = 2,
};

enum event_kind {
	/* Bytes sent or received on a watched connection. */
	EVENT_DATA = 1,
	/* A process began listening on, or connecting to, a watched port. */
	EVENT_DISCOVERED = 2,
	/* A connection on a watched port closed (whoever the process). */
	EVENT_CLOSED = 3,
	/* A followed client's connection to a followed server of this host:
	 * not captured (the server's side is), only named, once. */
	EVENT_CLIENT = 4,
};

enum record_flags {
	/* The syscall's last record: bytes past offset + captured (beyond
	 * MAX_SYSCALL_CAPTURE) moved but were not captured. */
	RECORD_LAST = 1,
};

/* The two ends of a TCP connection, in network byte order except ports,
 * which are host order. IPv4 addresses are IPv4-mapped IPv6 addresses. */
struct endpoints {
	unsigned char local_addr[16];
	unsigned char remote_addr[16];
	unsigned short local_port;
	unsigned short remote_port;
	unsigned int _pad;
};

struct event_header {
	unsigned long long timestamp_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	unsigned long long socket_cookie;
	unsigned int tgid;
	unsigned int kind;      /* enum event_kind */
	unsigned int direction; /* enum direction */
	unsigned int length;    /* bytes the syscall moved */
	unsigned int captured;  /* bytes that follow this header */
	unsigned int offset;    /* where they start in the syscall's bytes */
	unsigned int flags;     /* enum record_flags */
	struct endpoints ends;
	/* The process's name, on a connection's client end only (zeros on
	 * a server end: the reader names a server end's client otherwise). */
	char comm[16];
};

/* The state of one CPU's batch, in a map user space reads in place
 * (mmap) to tell which CPUs have records to flush. */
struct batch_state {
	/* A program is adding a record: a flush must wait. */
	unsigned int busy;
	/* Bytes and records in the batch. */
	unsigned int used;
	unsigned int records;
	unsigned int _pad;
	/* When its first record was taken. */
	unsigned long long first_ns;
	/* One cache line per CPU. */
	unsigned long long _line[5];
};

/* Counters kept per CPU, summed by the Rust side. Records and their bytes
 * are counted where they are read: two map updates per record cost as much
 * as the rest of a small capture. */
enum counter {
	COUNTER_LOST = 0,      /* events dropped: ring buffer full */
	COUNTER_TRUNCATED = 1, /* syscalls that moved more than MAX_SYSCALL_CAPTURE */
	COUNTERS = 2,
};

/* Probe-wide settings, written once before the programs are attached. */
struct settings {
	/* 1: follow every process that connects to or listens on a watched
	 * port; 0: only the processes in the `pids` map. */
	unsigned int discover;
	/* With discovery: only processes whose name is this (empty: any). */
	char comm[16];
	unsigned short ports[MAX_PORTS];
	unsigned int port_count;
	/* Never followed: the probe itself (its own INFO polls). */
	unsigned int ignore_tgid;
};

#endif
