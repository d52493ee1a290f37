//! How the scheduler hands tasks to executors. Both sides of a cluster must
//! use the same policy (`EMBER_SCHEDULING_POLICY` sets both).

use std::fmt;
use std::str::FromStr;

use ballista_core::config::TaskSchedulingPolicy;

/// How a job's failure message starts when the scheduler failed it so that
/// it runs again from the start: an executor was lost while a stage was
/// running, and Ballista's recovery would have counted the rows of that
/// stage's finished tasks twice. Ember's client submits such a query again
/// (a few times at most); see the scheduler's `stale_outputs` module.
pub const RESUBMIT_MARKER: &str = "[ember: resubmit]";

/// Whether executors pull tasks or the scheduler pushes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulingPolicy {
    /// Executors ask for work whenever they have a free slot (every 50 ms
    /// while idle). The default: an executor's free slots are its own
    /// count, so losing another executor mid-stage cannot leave the
    /// survivors' slots booked forever (which push scheduling in Ballista
    /// 55 can, hanging the job).
    #[default]
    Pull,
    /// The scheduler pushes tasks to executors' free slots as soon as they
    /// free up: lower latency per stage.
    Push,
}

impl SchedulingPolicy {
    /// Ballista's name for the policy.
    pub fn ballista(self) -> TaskSchedulingPolicy {
        match self {
            SchedulingPolicy::Pull => TaskSchedulingPolicy::PullStaged,
            SchedulingPolicy::Push => TaskSchedulingPolicy::PushStaged,
        }
    }
}

impl FromStr for SchedulingPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pull" => Ok(SchedulingPolicy::Pull),
            "push" => Ok(SchedulingPolicy::Push),
            other => Err(format!(
                "invalid scheduling policy `{other}`: expected pull or push"
            )),
        }
    }
}

impl fmt::Display for SchedulingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchedulingPolicy::Pull => "pull",
            SchedulingPolicy::Push => "push",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_policies_and_refuses_others() {
        assert_eq!("Pull".parse(), Ok(SchedulingPolicy::Pull));
        assert_eq!(" push".parse(), Ok(SchedulingPolicy::Push));
        assert!(
            "sometimes"
                .parse::<SchedulingPolicy>()
                .unwrap_err()
                .contains("pull or push")
        );
        assert_eq!(SchedulingPolicy::default().to_string(), "pull");
    }
}
