//! The one way tessera runs independent work side by side: a rayon pool of a given number of
//! threads over a list of items (0 = one per core). The first error wins; items not yet started
//! are skipped once an error is seen. Knows nothing of the items.

use rayon::prelude::*;

/// The threads to use for `workers` (0 = one per core), never more than `items`.
pub fn thread_count(workers: usize, items: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = if workers == 0 { cores } else { workers };
    wanted.clamp(1, items.max(1))
}

/// `work` applied to every item on `workers` threads, results in the items' order.
pub fn map<T: Sync, R: Send, E: Send>(
    workers: usize,
    items: &[T],
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(thread_count(workers, items.len()))
        .build()
        .expect("a thread pool starts");
    pool.install(|| items.par_iter().with_max_len(1).map(&work).collect())
}
