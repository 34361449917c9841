//! Commands Redis refuses for good: a `NOPERM` (the ACL user lacks a command,
//! a key pattern or a channel) or an unknown command (renamed or disabled by
//! a managed service). Unlike a timeout, retrying cannot help, and caching
//! quietly stops working: each refusal is logged once, at error, naming the
//! command; it is counted, and `/health` says `degraded` until the command
//! is accepted again.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::RedisError;

/// Commands the cache can work without: a refusal is reported, but does not
/// make the instance degraded.
const OPTIONAL: [&str; 1] = ["info"];

#[derive(Default)]
pub struct Refusals {
    /// Refused command (lower case, as Redis names it: `set`,
    /// `script|load`) → Redis' words.
    refused: Mutex<BTreeMap<String, String>>,
    /// Whether `refused` may hold anything: every successful operation
    /// reports its commands, and this keeps that off the lock.
    any: AtomicBool,
}

/// One refused command, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub command: String,
    pub reason: String,
    /// False for commands only monitoring needs.
    pub essential: bool,
}

/// Whether `err` is a refusal retrying will not cure.
pub fn is_permanent(err: &RedisError) -> bool {
    match err.code() {
        Some("NOPERM") => true,
        Some("ERR") => err.detail().is_some_and(|d| {
            d.starts_with("unknown command")
                || d.starts_with("unknown subcommand")
                || refused_in_script(d)
        }),
        _ => false,
    }
}

impl Refusals {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `err` if it is a permanent refusal of `sent` (the command as
    /// sent, for when Redis' words do not name it) made for `purpose` (the
    /// operation's summary, which tells scripts apart); true if it was one.
    pub fn note(&self, sent: &str, purpose: &str, err: &RedisError) -> bool {
        if !is_permanent(err) {
            return false;
        }
        let detail = err.detail().unwrap_or("");
        let reason = format!("{} {detail}", err.code().unwrap_or(""));
        // A command refused inside a script is not named; the script is
        // (each needs other commands, so one running says nothing of another).
        let command = if refused_in_script(detail) {
            script(purpose)
        } else {
            named_in(&reason).unwrap_or_else(|| as_named(sent))
        };
        let first = {
            let mut refused = self.lock();
            self.any.store(true, Ordering::Release);
            refused.insert(command.clone(), reason.clone()).is_none()
        };
        if first {
            tracing::error!(
                %command,
                reason,
                "redis refuses a command the cache needs; grant it to the Redis user (docs/operations.md, Redis permissions)"
            );
        }
        true
    }

    /// `commands` (as sent) were accepted: they are no longer refused.
    pub fn accepted<'a>(&self, commands: impl IntoIterator<Item = &'a str>) {
        self.clear(commands.into_iter().map(as_named));
    }

    /// The script run for `purpose` ran to its end.
    pub fn script_ran(&self, purpose: &str) {
        self.clear([
            script(purpose),
            as_named("EVALSHA"),
            as_named("SCRIPT LOAD"),
        ]);
    }

    fn clear(&self, commands: impl IntoIterator<Item = String>) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut refused = self.lock();
        for command in commands {
            if refused.remove(&command).is_some() {
                tracing::info!(%command, "redis accepts the command again");
            }
        }
        self.any.store(!refused.is_empty(), Ordering::Release);
    }

    pub fn list(&self) -> Vec<Refused> {
        self.lock()
            .iter()
            .map(|(command, reason)| Refused {
                command: command.clone(),
                reason: reason.clone(),
                essential: !OPTIONAL.contains(&command.as_str()),
            })
            .collect()
    }
}

/// Redis' words for a command a script ran that the user may not run.
fn refused_in_script(detail: &str) -> bool {
    detail.starts_with("The user executing the script can't")
}

/// How a script's refusal is named: `evalsha (fill under leases)`.
fn script(purpose: &str) -> String {
    format!("evalsha ({purpose})")
}

/// A command as sent (`SCRIPT LOAD`) as Redis names it (`script|load`).
fn as_named(sent: &str) -> String {
    sent.to_ascii_lowercase().replace(' ', "|")
}

/// The command a refusal names: `… to run the 'script|load' command`.
fn named_in(reason: &str) -> Option<String> {
    let (_, rest) = reason.split_once("to run the '")?;
    let (command, _) = rest.split_once('\'')?;
    Some(command.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, detail: &str) -> RedisError {
        let reply = format!("-{code} {detail}\r\n");
        redis::parse_redis_value(reply.as_bytes())
            .unwrap()
            .extract_error()
            .unwrap_err()
    }

    #[test]
    fn a_refusal_is_kept_until_the_command_is_accepted() {
        let refusals = Refusals::default();
        let set = server_error(
            "NOPERM",
            "this user has no permissions to run the 'set' command",
        );
        assert!(refusals.note("PIPELINE", "take leases", &set));
        let key = server_error(
            "NOPERM",
            "this user has no permissions to access one of the keys used as arguments",
        );
        assert!(refusals.note("GET", "", &key));
        let listed: Vec<String> = refusals.list().into_iter().map(|r| r.command).collect();
        assert_eq!(listed, ["get", "set"]);
        refusals.accepted(["SET", "GET"]);
        assert!(refusals.list().is_empty());
    }

    #[test]
    fn only_refusals_that_retrying_cannot_cure_are_noted() {
        let refusals = Refusals::default();
        assert!(!refusals.note("SET", "", &server_error("OOM", "command not allowed")));
        assert!(!refusals.note("GET", "", &server_error("ERR", "wrong number of arguments")));
        assert!(refusals.note(
            "SCRIPT LOAD",
            "",
            &server_error("ERR", "unknown command 'SCRIPT', with args beginning with:")
        ));
        let listed = refusals.list();
        assert_eq!(listed[0].command, "script|load");
        assert!(listed[0].essential);
    }

    #[test]
    fn info_is_optional() {
        let refusals = Refusals::default();
        let info = server_error(
            "NOPERM",
            "this user has no permissions to run the 'info' command",
        );
        refusals.note("INFO", "", &info);
        assert!(!refusals.list()[0].essential);
    }

    #[test]
    fn a_script_refused_a_command_stays_refused_while_other_scripts_run() {
        let refusals = Refusals::default();
        let inside = server_error(
            "ERR",
            "The user executing the script can't run this command or subcommand script: 06c0, on @user_script:1.",
        );
        assert!(refusals.note("EVALSHA", "fill under leases", &inside));
        refusals.script_ran("release leases");
        refusals.accepted(["EVALSHA"]);
        assert_eq!(refusals.list()[0].command, "evalsha (fill under leases)");
        refusals.script_ran("fill under leases");
        assert!(refusals.list().is_empty());
    }
}
