//! Coalescing: the calls that arrive while the database is busy with one
//! statement go together in the next.
//!
//! Refresh-token rotations on either backend, and on PostgreSQL the reads of
//! every authenticated request, are each one small statement on one row. One
//! at a time, each pays a trip to the database, and each write its own commit
//! and `fsync`; the database's work per row is a small part of that. Here one
//! task per kind of call takes every call waiting at the moment and applies
//! them with one statement built for many rows (`… FROM (VALUES …)`, `= ANY($1)`,
//! `UNNEST`), then answer each caller on its own. Nothing waits on purpose:
//! a call that finds its task idle goes at once, alone; under load the calls
//! that queued behind a running statement share the next one. Each statement
//! starts after every call in it arrived, so a read still sees everything
//! committed before its request came in, and a compare-and-set is still
//! decided by the database.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, StoreResult};

/// Calls that may wait for the task before callers wait to enqueue.
const QUEUE: usize = 4096;

/// How one kind of call is applied many at a time.
pub(super) trait Batch: Send + Sync + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;
    /// The `statement` label of the `latchkey_store_batch_size` histogram.
    const NAME: &'static str;

    /// Items with the same key never share a statement; `None` (the
    /// default) lets any items share one.
    fn key(_item: &Self::Item) -> Option<&str> {
        None
    }

    /// Applies `items` together; the answers come back in their order.
    fn apply(
        &self,
        items: Vec<Self::Item>,
    ) -> impl Future<Output = StoreResult<Vec<Self::Output>>> + Send;

    /// Called when no call is waiting, before the task sleeps until the
    /// next: what `apply` kept for the calls right behind (a connection)
    /// can go back.
    fn idle(&self) {}
}

struct Job<B: Batch> {
    item: B::Item,
    reply: oneshot::Sender<StoreResult<B::Output>>,
}

/// The handle callers use; the task stops when it is dropped.
pub(super) struct Batcher<B: Batch> {
    queue: mpsc::Sender<Job<B>>,
}

impl<B: Batch> Batcher<B> {
    /// Starts the task on the current runtime, applying up to `most` items
    /// per statement, one statement at a time.
    pub(super) fn start(batch: B, most: usize) -> Self {
        let (queue, incoming) = mpsc::channel(QUEUE);
        tokio::spawn(run(batch, incoming, most.max(1)));
        Self { queue }
    }

    /// Applies `item` with whatever else is waiting.
    pub(super) async fn call(&self, item: B::Item) -> StoreResult<B::Output> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the database batcher has stopped".into());
        self.queue
            .send(Job { item, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run<B: Batch>(batch: B, mut incoming: mpsc::Receiver<Job<B>>, most: usize) {
    let mut waiting: VecDeque<Job<B>> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            let job = match incoming.try_recv() {
                Ok(job) => Some(job),
                Err(_) => {
                    batch.idle();
                    incoming.recv().await
                }
            };
            match job {
                Some(job) => waiting.push_back(job),
                None => return,
            }
        }
        while waiting.len() < 2 * most {
            match incoming.try_recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<_>, Vec<_>) = take_batch::<B>(&mut waiting, most)
            .into_iter()
            .map(|job| (job.item, job.reply))
            .unzip();
        let count = items.len();
        metrics::histogram!("latchkey_store_batch_size", "statement" => B::NAME)
            .record(count as f64);
        match batch.apply(items).await {
            Ok(answers) if answers.len() == count => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Ok(answers) => {
                let message = format!("a batch of {count} gave {} answers", answers.len());
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Other(message.clone())));
                }
            }
            Err(e) => {
                let unavailable = matches!(e, StoreError::Unavailable(_));
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(if unavailable {
                        StoreError::Unavailable(message.clone())
                    } else {
                        StoreError::Other(message.clone())
                    }));
                }
            }
        }
    }
}

/// Takes, in arrival order, up to `most` jobs with distinct keys; the rest
/// keep their place for the next statement.
fn take_batch<B: Batch>(waiting: &mut VecDeque<Job<B>>, most: usize) -> Vec<Job<B>> {
    let mut batch = Vec::with_capacity(waiting.len().min(most));
    let mut keys = HashSet::new();
    let mut later = VecDeque::new();
    while let Some(job) = waiting.pop_front() {
        let fits =
            batch.len() < most && B::key(&job.item).is_none_or(|k| keys.insert(k.to_owned()));
        if fits {
            batch.push(job);
        } else {
            later.push_back(job);
        }
    }
    *waiting = later;
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Keyed;
    impl Batch for Keyed {
        type Item = &'static str;
        type Output = ();
        const NAME: &'static str = "keyed";
        fn key(item: &Self::Item) -> Option<&str> {
            Some(item)
        }
        async fn apply(&self, items: Vec<Self::Item>) -> StoreResult<Vec<()>> {
            Ok(vec![(); items.len()])
        }
    }

    fn jobs(items: &[&'static str]) -> VecDeque<Job<Keyed>> {
        items
            .iter()
            .map(|&item| Job {
                item,
                reply: oneshot::channel().0,
            })
            .collect()
    }

    fn items(jobs: &[Job<Keyed>]) -> Vec<&str> {
        jobs.iter().map(|j| j.item).collect()
    }

    #[test]
    fn a_batch_holds_each_key_once_and_keeps_arrival_order() {
        let mut waiting = jobs(&["a", "b", "a", "c", "b", "a"]);
        assert_eq!(items(&take_batch(&mut waiting, 256)), ["a", "b", "c"]);
        assert_eq!(items(&take_batch(&mut waiting, 256)), ["a", "b"]);
        assert_eq!(items(&take_batch(&mut waiting, 256)), ["a"]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn a_batch_is_bounded() {
        let mut waiting = jobs(&["a", "b", "c", "d", "e"]);
        assert_eq!(items(&take_batch(&mut waiting, 3)), ["a", "b", "c"]);
        assert_eq!(items(&waiting.drain(..).collect::<Vec<_>>()), ["d", "e"]);
    }

    /// Every caller gets its own answer, however the calls were grouped.
    struct Double;
    impl Batch for Double {
        type Item = u32;
        type Output = u32;
        const NAME: &'static str = "double";
        async fn apply(&self, items: Vec<u32>) -> StoreResult<Vec<u32>> {
            tokio::task::yield_now().await;
            Ok(items.into_iter().map(|i| i * 2).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_caller_gets_its_own_answer() {
        let batcher = std::sync::Arc::new(Batcher::start(Double, 8));
        let calls: Vec<_> = (0..200u32)
            .map(|i| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (i, batcher.call(i).await) })
            })
            .collect();
        for call in calls {
            let (i, answer) = call.await.expect("task");
            assert_eq!(answer.expect("answer"), i * 2);
        }
    }
}
