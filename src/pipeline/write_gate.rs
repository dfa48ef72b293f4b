//! The question an `at_least_once` write asks before each statement: may
//! this process still write its batch's rows?
//!
//! Asked once before the whole write, it left a window as long as the
//! write: a process frozen after its first wave of statements went on with
//! the rest when it thawed, after the partitions' new owner had read and
//! cached older versions of those rows, and the fault suite's
//! `zombie_member_cannot_clobber` saw reservations missing from stock
//! (ci34, ci36). Asked before each statement, the window shrinks to a
//! statement that passed the gate and had not left the process when it
//! froze.

use std::sync::OnceLock;

use super::StepError;

/// Says, before each statement of a write, whether it may go; once closed,
/// it stays closed and remembers why.
pub struct WriteGate<'a> {
    /// Why the batch must not write now, if it must not.
    check: &'a (dyn Fn() -> Option<String> + Sync),
    closed: OnceLock<String>,
}

impl<'a> WriteGate<'a> {
    /// A gate that asks `check` before each statement.
    pub fn new(check: &'a (dyn Fn() -> Option<String> + Sync)) -> Self {
        Self {
            check,
            closed: OnceLock::new(),
        }
    }

    /// Ok when the next statement may go. Otherwise the gate closes, and a
    /// retryable error says why (the caller learns it was the gate from
    /// [`WriteGate::closed`]).
    pub fn may_write(&self) -> Result<(), StepError> {
        if let Some(reason) = self.closed.get() {
            return Err(StepError::Retryable(format!("stopped writing: {reason}")));
        }
        match (self.check)() {
            None => Ok(()),
            Some(reason) => {
                let reason = self.closed.get_or_init(|| reason);
                Err(StepError::Retryable(format!("stopped writing: {reason}")))
            }
        }
    }

    /// Why the gate closed, if it did.
    pub fn closed(&self) -> Option<&str> {
        self.closed.get().map(String::as_str)
    }
}

/// A gate that is always open: for writes no other member can race.
pub fn always_open() -> WriteGate<'static> {
    static NEVER: fn() -> Option<String> = || None;
    WriteGate::new(&NEVER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_gate_stays_closed_once_its_check_says_stop() {
        let asked = AtomicUsize::new(0);
        let check = || (asked.fetch_add(1, Ordering::SeqCst) >= 2).then(|| "paused".to_string());
        let gate = WriteGate::new(&check);
        assert!(gate.may_write().is_ok());
        assert!(gate.may_write().is_ok());
        assert_eq!(gate.closed(), None);
        assert!(gate.may_write().is_err());
        assert_eq!(gate.closed(), Some("paused"));
        // Closed for good, without asking again.
        assert!(gate.may_write().is_err());
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn an_open_gate_lets_every_statement_go() {
        let gate = always_open();
        for _ in 0..3 {
            assert!(gate.may_write().is_ok());
        }
        assert_eq!(gate.closed(), None);
    }
}
