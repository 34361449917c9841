//! Child processes that never outlive the test that started them.

use std::process::Command;

/// Makes the spawned process receive `signal` when the spawning thread ends,
/// so no test server outlives a crashed or interrupted test run.
pub fn kill_with_parent(command: &mut Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's state.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
