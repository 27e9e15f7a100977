// mmstore/sync/process_mutex.hpp
//
// ProcessMutex: the write lock of a store, living in the store's LockSlot (storage/header.hpp) so that
// every process that maps the store shares it. It is a pthread mutex that is
//   * process-shared (PTHREAD_PROCESS_SHARED): works across processes mapping the same file or segment;
//   * robust (PTHREAD_MUTEX_ROBUST): when a holder dies, the kernel marks the lock and the next acquirer
//     gets it with Acquired::kOwnerDied, so it repairs the store before anyone relies on it -- never a
//     deadlock;
//   * recursive: a thread that holds it may take it again (a `with d.lock:` block around single writes,
//     or two handles of one store in one thread).
// Why pthread and not a hand-rolled futex lock: the kernel's robust-list protocol is the only instant and
// pid-reuse-proof way to learn of a holder's death, and glibc owns each thread's robust list.
//
// lock() spins briefly (trylock with pause) before sleeping: a critical section here is a few hundred
// nanoseconds, far shorter than a futex sleep and wake-up (~5 us), so two processes taking turns at
// `with d.lock: d['n'] += 1` would otherwise spend most of their time in the kernel.
//
// Thread and process safety: all methods may be called from any thread of any process mapping the slot.
// The slot must have been initialized (initialize()) by the store's first opener.
#pragma once

#include <cstdint>

#include "mmstore/storage/header.hpp"

namespace mmstore::sync {

enum class Acquired {
    kOk,         // acquired (or re-entered)
    kOwnerDied,  // acquired, but the previous holder died holding it: repair, then call mark_consistent()
    kBusy,       // not acquired: held elsewhere (try_lock) or the timeout passed (lock_for)
};

class ProcessMutex {
public:
    explicit ProcessMutex(storage::LockSlot* slot) noexcept : slot_(slot) {}

    // (Re)creates the mutex in the slot. Only when no process can be using it (Region::open, open gate).
    static void initialize(storage::LockSlot* slot);

    Acquired lock();
    Acquired try_lock();
    // Waits at most `timeout_ns` (< 0: forever).
    Acquired lock_for(std::int64_t timeout_ns);
    // Spins (never sleeps) for at most `ns` nanoseconds waiting for the lock; kBusy if it stays held.
    Acquired spin_for(std::int64_t ns);
    // After kOwnerDied, once the protected state is consistent again.
    void mark_consistent() noexcept;
    void unlock() noexcept;
    // True when the calling thread holds the lock.
    bool held_by_me() const noexcept;
    // Pid of the holder for messages (0 when free; may be stale by the time it is read).
    int holder_pid() const noexcept { return static_cast<int>(__atomic_load_n(&slot_->holder_pid, __ATOMIC_ACQUIRE)); }

private:
    Acquired finish(int rc);
    storage::LockSlot* slot_;
};

}  // namespace mmstore::sync
