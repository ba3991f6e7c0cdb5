//! Small synchronisation helpers shared by the registry and the stores.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poison.
///
/// Every update this crate makes under a lock is a single assignment, insert or remove, so
/// the data is consistent even if a panic elsewhere poisoned the lock: carrying on is right,
/// and one panicking request must not make every later one panic too.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// [`lock`] for the other tower-upload crates; not part of the public API.
#[doc(hidden)]
pub fn lock_unpoisoned<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    lock(mutex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_still_usable() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let poisoner = std::sync::Arc::clone(&mutex);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock().unwrap();
            panic!("poison the lock");
        })
        .join();
        assert!(mutex.is_poisoned());
        *lock(&mutex) += 1;
        assert_eq!(*lock_unpoisoned(&mutex), 2);
    }
}
