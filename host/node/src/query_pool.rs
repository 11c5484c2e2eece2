//! The threads contract queries run on: a fixed pool at low CPU priority.
//!
//! Anyone who reaches a node's API may send queries, each up to the query gas. Run on the
//! caller's thread, enough of them at once take every core from the validator's consensus
//! and block execution (one process, or one machine). On these threads, niced (Linux: +10),
//! the scheduler gives consensus and execution the CPU first, and queries what is left. The
//! pool has as many threads as queries may run at once, so a job never waits for a thread;
//! the caller waits for the answer at most [`QUERY_DEADLINE`].

use std::sync::mpsc;
use std::time::Duration;

/// Niceness of the query threads (higher is lower priority).
const QUERY_NICE: i32 = 19;
/// Longest a caller waits for a query's answer (the query's gas bounds its work well below
/// this on a machine that is not starved; this bounds the wait when it is).
pub const QUERY_DEADLINE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

pub struct QueryPool {
    jobs: parking_lot::Mutex<mpsc::Sender<Job>>,
}

impl QueryPool {
    /// Starts `threads` threads with `stack_bytes` of stack each.
    pub fn start(threads: usize, stack_bytes: usize) -> std::io::Result<QueryPool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(parking_lot::Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("query-{i}"))
                .stack_size(stack_bytes)
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock().recv() {
                            Ok(job) => job,
                            // The node is gone.
                            Err(_) => return,
                        };
                        job();
                    }
                })?;
        }
        Ok(QueryPool {
            jobs: parking_lot::Mutex::new(tx),
        })
    }

    /// Runs `f` on a query thread and waits for its answer (`None` after the deadline, or if
    /// the thread died).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.lock().send(job).ok()?;
        rx.recv_timeout(QUERY_DEADLINE).ok()
    }
}

/// Lowers this thread's priority (Linux: per thread). Elsewhere, or if refused, nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take no pointers; they only read this thread's id and
    // set its niceness.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, QUERY_NICE);
    }
}

/// This thread's niceness (tests).
#[cfg(target_os = "linux")]
pub fn current_nice() -> i32 {
    // SAFETY: as above.
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn queries_run_at_low_priority_and_answer() {
        let pool = QueryPool::start(2, 1 << 20).unwrap();
        assert!(pool.run(current_nice).unwrap() >= QUERY_NICE);
        assert_eq!(pool.run(|| 6 * 7), Some(42));
        // A job that dies gives no answer, and the pool goes on.
        assert_eq!(pool.run(|| -> u8 { panic!("on purpose") }), None);
        assert_eq!(pool.run(|| 1), Some(1));
    }
}
