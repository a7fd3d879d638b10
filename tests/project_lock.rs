//! The project lock (one devstack per project): asking who holds it never takes it. Its own
//! test binary: in the library's, other tests fork children in parallel, and a child forked
//! while the lock's file is open keeps the lock held until it execs, which this test would see.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use devstack::project::lock::{acquire, holder};

#[test]
fn asking_who_holds_the_lock_never_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let asker = {
        let (dir, stop) = (dir.path().to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            let mut asked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = holder(&dir);
                asked += 1;
            }
            asked
        })
    };
    // A client asking all the while never makes an `up` think the project is taken.
    for _ in 0..2000 {
        let lock = acquire(dir.path()).unwrap();
        assert!(lock.is_ok(), "taken by a question: {:?}", lock.err());
    }
    stop.store(true, Ordering::Relaxed);
    assert!(asker.join().unwrap() > 0);
    // While held, the holder is named and a second `up` is refused.
    let held = acquire(dir.path()).unwrap().unwrap();
    assert_eq!(holder(dir.path()), Some(std::process::id()));
    assert_eq!(acquire(dir.path()).unwrap().err(), Some(std::process::id()));
    drop(held);
    assert_eq!(holder(dir.path()), None);
}
