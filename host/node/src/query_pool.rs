//! The threads contract queries run on: a fixed pool at low CPU priority, which is also the
//! limit on how many queries run at once.
//!
//! Anyone who reaches a node's API may send queries, each up to the query gas and the query
//! VM's wall-clock limit. Run on the caller's thread, enough of them at once take every core
//! from the validator's consensus and block execution (one process, or one machine). On these
//! threads, niced (Linux: 19), the scheduler gives consensus and execution the CPU first, and
//! queries what is left.
//!
//! Invariant: a query holds its place from when it is handed to a thread until that thread has
//! finished it, not until its caller stops waiting. So a caller that gives up (its own
//! deadline) never lets more queries run than there are threads, and a job never waits in the
//! channel for a thread.

use parking_lot::{Condvar, Mutex};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Niceness of the query threads (higher is lower priority).
const QUERY_NICE: i32 = 19;

type Job = Box<dyn FnOnce() + Send>;

/// Why a query got no answer.
#[derive(Debug, PartialEq, Eq)]
pub enum NoAnswer {
    /// Every thread was taken for as long as the caller would wait for one.
    Busy(usize),
    /// The caller's wait for the answer ended first (the query keeps its thread until it
    /// stops, at the query VM's own time limit).
    TimedOut(Duration),
    /// The query panicked.
    Died,
}

/// How many threads run a query now.
struct Places {
    taken: Mutex<usize>,
    freed: Condvar,
}

/// A taken place; given back when the job it travels with ends, however it ends.
struct Place(Arc<Places>);

impl Drop for Place {
    fn drop(&mut self) {
        *self.0.taken.lock() -= 1;
        self.0.freed.notify_one();
    }
}

pub struct QueryPool {
    jobs: Mutex<mpsc::Sender<Job>>,
    places: Arc<Places>,
    threads: usize,
}

impl QueryPool {
    /// Starts `threads` threads with `stack_bytes` of stack each.
    pub fn start(threads: usize, stack_bytes: usize) -> std::io::Result<QueryPool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
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
                        // A panicking query loses its answer, not the thread: the pool keeps
                        // as many threads as places.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(QueryPool {
            jobs: Mutex::new(tx),
            places: Arc::new(Places {
                taken: Mutex::new(0),
                freed: Condvar::new(),
            }),
            threads,
        })
    }

    /// Queries running now (tests, metrics).
    pub fn running(&self) -> usize {
        *self.places.taken.lock()
    }

    /// Runs `f` on a query thread: waits up to `wait_for_place` for a free thread, then up to
    /// `wait_for_answer` for `f`'s answer.
    pub fn run<T: Send + 'static>(
        &self,
        wait_for_place: Duration,
        wait_for_answer: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NoAnswer> {
        let place = {
            let mut taken = self.places.taken.lock();
            let until = Instant::now() + wait_for_place;
            while *taken >= self.threads {
                if self.places.freed.wait_until(&mut taken, until).timed_out() {
                    return Err(NoAnswer::Busy(*taken));
                }
            }
            *taken += 1;
            Place(self.places.clone())
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let answer = f();
            // Free before answering: whoever reads the answer sees the place given back.
            drop(place);
            let _ = tx.send(answer);
        });
        self.jobs.lock().send(job).map_err(|_| NoAnswer::Died)?;
        rx.recv_timeout(wait_for_answer).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => NoAnswer::TimedOut(wait_for_answer),
            mpsc::RecvTimeoutError::Disconnected => NoAnswer::Died,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    #[cfg(target_os = "linux")]
    #[test]
    fn queries_run_at_low_priority_and_answer() {
        let pool = QueryPool::start(2, 1 << 20).unwrap();
        assert!(pool.run(LONG, LONG, current_nice).unwrap() >= QUERY_NICE);
        assert_eq!(pool.run(LONG, LONG, || 6 * 7), Ok(42));
        // A job that dies gives no answer, and the pool keeps both threads.
        assert_eq!(
            pool.run(LONG, LONG, || -> u8 { panic!("on purpose") }),
            Err(NoAnswer::Died)
        );
        assert_eq!(pool.run(LONG, LONG, || 1), Ok(1));
        assert_eq!(pool.running(), 0);
    }

    /// The review's finding: a caller that stops waiting used to give back its place while its
    /// query still ran, so more queries than threads could be let in.
    #[test]
    fn a_query_keeps_its_place_after_its_caller_gives_up() {
        let pool = QueryPool::start(1, 1 << 20).unwrap();
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let first = pool.run(LONG, Duration::ZERO, move || {
            started.send(()).unwrap();
            held.recv().unwrap();
        });
        assert_eq!(first, Err(NoAnswer::TimedOut(Duration::ZERO)));
        running.recv().unwrap();
        // The first query still runs: no place for a second one.
        assert_eq!(pool.running(), 1);
        assert_eq!(
            pool.run(Duration::from_millis(20), LONG, || 2),
            Err(NoAnswer::Busy(1))
        );
        // Once it ends, its place is free again.
        release.send(()).unwrap();
        assert_eq!(pool.run(LONG, LONG, || 3), Ok(3));
    }
}
