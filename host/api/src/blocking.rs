//! Where handlers do their store reads and proofs: on tokio's blocking threads, a bounded
//! number at a time. Only work that is the store's alone belongs here: a job that waited for
//! something else (the query pool, a lock) would hold a place readers need. Contract queries
//! and statements (queries too) wait for the node's query pool instead; submissions, short,
//! run beside.
//!
//! Off the async workers, so a burst of slow reads never stalls the workers that accept
//! connections, answer `/v1/status` and stream events; bounded, so a flood of requests (the
//! API allows [`crate::web::MAX_CONCURRENT_REQUESTS`] in flight) cannot take all of tokio's
//! 512 blocking threads and the memory each read holds.
//!
//! Invariant: a job keeps its place until it has *finished*, not until its caller stops
//! waiting. The request timeout drops the handler's future, but a blocking thread cannot be
//! stopped; releasing the place then would let timed-out requests pile up threads without
//! bound.

use crate::ApiError;
use axum::http::StatusCode;
use tokio::sync::Semaphore;

/// Jobs running at once, for all of this process's API routers.
pub const LIMIT: usize = 16;

/// The process's limit on handlers' blocking jobs.
pub static JOBS: Jobs = Jobs::new(LIMIT);

/// A limit on blocking jobs running at once.
pub struct Jobs {
    places: Semaphore,
}

impl Jobs {
    pub const fn new(limit: usize) -> Jobs {
        Jobs {
            places: Semaphore::const_new(limit),
        }
    }

    /// Runs `work` on a blocking thread once a place is free (waiting for one in turn), and
    /// answers what it returns.
    pub async fn run<T, F>(&'static self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    {
        let place = self.places.acquire().await.map_err(|_| died("closed"))?;
        tokio::task::spawn_blocking(move || {
            let _place = place;
            work()
        })
        .await
        .map_err(|e| died(&e.to_string()))?
    }

    /// Places free now.
    pub fn free(&self) -> usize {
        self.places.available_permits()
    }
}

/// Runs `work` under the process's limit ([`JOBS`]).
pub async fn run<T, F>(work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    JOBS.run(work).await
}

/// Runs `work` on a blocking thread without taking a place: for work bounded by a limit of
/// its own (queries, statements: the node's query pool) or short (submissions).
pub async fn beside<T, F>(work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| died(&e.to_string()))
}

fn died(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "node_error",
        format!("the request's work did not finish: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A job that says it started, then waits to be let go.
    fn held(
        started: &mpsc::Sender<usize>,
        i: usize,
    ) -> (
        mpsc::Sender<()>,
        impl FnOnce() -> Result<usize, ApiError> + Send + 'static,
    ) {
        let (go, wait) = mpsc::channel::<()>();
        let started = started.clone();
        (go, move || {
            let _ = started.send(i);
            let _ = wait.recv();
            Ok(i)
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_limit_run_and_a_waiting_job_starts_when_one_ends() {
        static TWO: Jobs = Jobs::new(2);
        let (started, starts) = mpsc::channel();
        let mut gos = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (go, job) = held(&started, i);
            gos.push(go);
            tasks.push(tokio::spawn(TWO.run(job)));
        }
        let first_two = [
            starts.recv_timeout(Duration::from_secs(20)).unwrap(),
            starts.recv_timeout(Duration::from_secs(20)).unwrap(),
        ];
        assert_eq!(TWO.free(), 0);
        // The third waits while both places are taken: it has not started (an absence,
        // checked for a while; a correct limit never lets it start).
        assert!(starts.recv_timeout(Duration::from_millis(300)).is_err());
        let released = first_two[0];
        gos[released].send(()).unwrap();
        let third = starts.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(!first_two.contains(&third));
        for go in &gos {
            let _ = go.send(());
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap().unwrap_or(usize::MAX));
        }
        assert_eq!(answers, vec![0, 1, 2]);
        assert_eq!(TWO.free(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_keeps_its_place_after_its_caller_gives_up() {
        static ONE: Jobs = Jobs::new(1);
        let (started, starts) = mpsc::channel();
        let (go, job) = held(&started, 0);
        let caller = tokio::spawn(ONE.run(job));
        starts.recv_timeout(Duration::from_secs(20)).unwrap();
        // The request times out: its future is dropped, its thread still runs.
        caller.abort();
        assert!(caller.await.unwrap_err().is_cancelled());
        assert_eq!(ONE.free(), 0, "the place is held until the job ends");
        go.send(()).unwrap();
        // The next job gets the place once the first has finished.
        let next = ONE.run(|| Ok(7)).await.unwrap_or(0);
        assert_eq!(next, 7);
        assert_eq!(ONE.free(), 1);
    }
}
