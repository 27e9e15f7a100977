#include "mmstore/sync/process_mutex.hpp"

#include <emmintrin.h>
#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "mmstore/error.hpp"
#include "mmstore/os/file.hpp"

namespace mmstore::sync {

static_assert(sizeof(pthread_mutex_t) <= sizeof(storage::LockSlot::mutex), "LockSlot::mutex too small");

namespace {

pthread_mutex_t* native(storage::LockSlot* slot) noexcept { return reinterpret_cast<pthread_mutex_t*>(slot->mutex); }

// Spin budget before sleeping, in nanoseconds. A transaction of a few read-modify-writes from Python holds
// the lock 2-3 us and takes it again ~0.3 us after releasing it; a futex sleep costs the waiter a wake-up
// (several us) and makes every unlock of the holder a FUTEX_WAKE system call while the waiter bit is set.
// 20 us covers such a critical section several times over; a waiter that spins it all in vain has lost
// less than one sleep and wake-up would cost it. docs/design.md, "Writers serialize on a robust mutex".
constexpr std::int64_t kSpinNs = 20'000;

// The holder's tid bits of the lock word (FUTEX_TID_MASK): 0 while the mutex is free, and once the kernel
// has cleared a dead holder's tid (it then sets FUTEX_OWNER_DIED: trylock returns EOWNERDEAD).
bool looks_held(pthread_mutex_t* m) noexcept { return (__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED) & 0x3FFFFFFF) != 0; }

// The holder's owner tid, as glibc keeps it (__data.__owner), to tell "held by this thread" apart.
int owner_tid(pthread_mutex_t* m) noexcept { return __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) & 0x3FFFFFFF; }

}  // namespace

void ProcessMutex::initialize(storage::LockSlot* slot) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    std::memset(slot->mutex, 0, sizeof slot->mutex);
    const int rc = pthread_mutex_init(native(slot), &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) throw_error(ErrorCode::kIo, "", "cannot initialize the store's process-shared mutex", rc);
    slot->holder_pid = 0;
    slot->depth = 0;
}

Acquired ProcessMutex::finish(int rc) {
    if (rc == 0 || rc == EOWNERDEAD) {
        if (++slot_->depth == 1 || rc == EOWNERDEAD) {
            slot_->depth = 1;  // a dead holder's depth is meaningless
            __atomic_store_n(&slot_->holder_pid, static_cast<std::uint32_t>(os::current_pid()), __ATOMIC_RELEASE);
        }
        return rc == 0 ? Acquired::kOk : Acquired::kOwnerDied;
    }
    if (rc == EBUSY || rc == ETIMEDOUT) return Acquired::kBusy;
    if (rc == ENOTRECOVERABLE)
        throw_error(ErrorCode::kCorrupt, "", "the store's lock is unrecoverable (a holder died during repair); reopen the store");
    throw_error(ErrorCode::kIo, "", "cannot acquire the store's lock", rc);
}

Acquired ProcessMutex::try_lock() {
    pthread_mutex_t* m = native(slot_);
    // Held by another thread: busy, without the trylock's compare-and-swap, which would take the lock's
    // cache line from the holder in the middle of its critical section (its next store to the line, the
    // change counter or the unlock, then waits for it to come back: perf put 45% of a two-process
    // transaction's commit on that store). A lock this thread holds is re-entered by the trylock.
    if (looks_held(m) && owner_tid(m) != os::current_tid()) return Acquired::kBusy;
    return finish(pthread_mutex_trylock(m));
}

Acquired ProcessMutex::lock() { return lock_for(-1); }

Acquired ProcessMutex::lock_for(std::int64_t timeout_ns) {
    pthread_mutex_t* m = native(slot_);
    const Acquired first = try_lock();  // also takes a recursive lock this thread holds
    if (first != Acquired::kBusy || timeout_ns == 0) return first;
    const Acquired a = spin_for(timeout_ns < 0 ? kSpinNs : std::min<std::int64_t>(kSpinNs, timeout_ns));
    if (a != Acquired::kBusy) return a;
    if (timeout_ns < 0) return finish(pthread_mutex_lock(m));
    timespec abs{};
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_sec += static_cast<time_t>(timeout_ns / 1000000000);
    abs.tv_nsec += static_cast<long>(timeout_ns % 1000000000);
    if (abs.tv_nsec >= 1000000000) {
        abs.tv_sec += 1;
        abs.tv_nsec -= 1000000000;
    }
    return finish(pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &abs));
}

Acquired ProcessMutex::spin_for(std::int64_t ns) {
    pthread_mutex_t* m = native(slot_);
    // Test and test-and-set: wait for the lock word to look free by reading it only (a trylock writes the
    // cache line, which slows the holder down), then try.
    // Four pauses between reads (~100 ns here): every read takes the line shared, and the holder's next
    // store to it (the change counter, the unlock) must then take it back, so a waiter that reads less often
    // lengthens the holder's critical section less. Two processes doing transfers in transactions
    // (bench_shared.py's loop), alternated runs, medians: one pause 877K/s against four 890K/s (8 runs
    // each: within this machine's noise), four 858K/s against eight 733K/s (6 runs each).
    const std::int64_t start = os::monotonic_ns();
    for (unsigned i = 1;; ++i) {
        for (int k = 0; k < 4; ++k) _mm_pause();
        if (!looks_held(m)) {
            const int rc = pthread_mutex_trylock(m);
            if (rc != EBUSY) return finish(rc);
        }
        if (i % 8 == 0 && os::monotonic_ns() - start >= ns) return Acquired::kBusy;
    }
}

void ProcessMutex::mark_consistent() noexcept { pthread_mutex_consistent(native(slot_)); }

void ProcessMutex::unlock() noexcept {
    if (--slot_->depth == 0) __atomic_store_n(&slot_->holder_pid, 0u, __ATOMIC_RELEASE);
    pthread_mutex_unlock(native(slot_));
}

bool ProcessMutex::held_by_me() const noexcept { return owner_tid(native(slot_)) == os::current_tid(); }

}  // namespace mmstore::sync
