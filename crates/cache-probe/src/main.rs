use std::mem::MaybeUninit;
use std::time::Duration;

use cache_probe::ebpf;

fn main() -> anyhow::Result<()> {
    ebpf::preflight()?;
    let object = Box::leak(Box::new(MaybeUninit::uninit()));
    let probe = ebpf::Probe::load(
        object,
        &ebpf::Selection {
            ports: &[6391],
            discover: true,
            comm: None,
        },
    )?;
    for pid in std::env::args().skip(1) {
        probe.select(pid.parse()?)?;
    }
    let n = std::cell::Cell::new(0);
    probe.drain(
        Duration::from_millis(10),
        |e| {
            if n.get() < 12 {
                println!(
                    "{} {} {} dir={} len={} {} -> {} {:?}",
                    e.kind,
                    e.tgid,
                    e.comm,
                    e.direction,
                    e.length,
                    e.local,
                    e.remote,
                    String::from_utf8_lossy(&e.data[..e.data.len().min(60)])
                );
            }
            n.set(n.get() + 1);
        },
        |p| {
            let c = p.counters();
            if c.events > 0 && n.get() >= 12 {
                println!("{c:?} selected={:?}", p.selected());
                false
            } else {
                true
            }
        },
    )?;
    Ok(())
}
