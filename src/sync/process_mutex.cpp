#include "mmstore/sync/process_mutex.hpp"

#include <emmintrin.h>
#include <pthread.h>
#include <time.h>

#include <cerrno>
#include <cstring>

#include "mmstore/error.hpp"
#include "mmstore/os/file.hpp"

namespace mmstore::sync {

static_assert(sizeof(pthread_mutex_t) <= sizeof(storage::LockSlot::mutex), "LockSlot::mutex too small");

namespace {

pthread_mutex_t* native(storage::LockSlot* slot) noexcept { return reinterpret_cast<pthread_mutex_t*>(slot->mutex); }

// Spin budget before sleeping: ~2 us of trylock attempts, the length of a few critical sections.
constexpr int kSpins = 64;

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

Acquired ProcessMutex::try_lock() { return finish(pthread_mutex_trylock(native(slot_))); }

Acquired ProcessMutex::lock() { return lock_for(-1); }

Acquired ProcessMutex::lock_for(std::int64_t timeout_ns) {
    pthread_mutex_t* m = native(slot_);
    for (int i = 0; i < kSpins; ++i) {
        const int rc = pthread_mutex_trylock(m);
        if (rc != EBUSY) return finish(rc);
        if (timeout_ns == 0) return Acquired::kBusy;
        for (int j = 0; j < 16; ++j) _mm_pause();
    }
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

void ProcessMutex::mark_consistent() noexcept { pthread_mutex_consistent(native(slot_)); }

void ProcessMutex::unlock() noexcept {
    if (--slot_->depth == 0) __atomic_store_n(&slot_->holder_pid, 0u, __ATOMIC_RELEASE);
    pthread_mutex_unlock(native(slot_));
}

bool ProcessMutex::held_by_me() const noexcept { return owner_tid(native(slot_)) == os::current_tid(); }

}  // namespace mmstore::sync
