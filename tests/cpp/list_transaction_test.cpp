// tests/cpp/list_transaction_test.cpp -- List::Transaction (list.hpp) and containers::SequenceTxn.
//
// A seeded differential test against std::vector: transactions of random writes (overwrites, appends past
// the capacity, pops, inserts and deletes in the middle, splices, clears, small and large values,
// savepoints) that commit or roll back; then the pieces: read-your-writes, RAII rollback, the lock held
// for the transaction's life, writes through the List itself refused, and SIGKILL at random instants,
// also while a commit log is published, leaving each transaction whole or absent.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "mmstore/list.hpp"
#include "mmstore/storage/header.hpp"
#include "test_util.hpp"

namespace {

using mmstore::List;
using mmstore::codec::Value;
using mmstore_test::random_bytes;
using mmstore_test::uniform;

class ListTransactionTest : public ::testing::Test {
protected:
    mmstore_test::TempDir dir_;
    std::string path_ = dir_.file("l.mms");
};

std::vector<std::string> contents(const List& l) {
    std::vector<std::string> out;
    for (std::uint64_t i = 0; i < l.size(); ++i) out.push_back(l.get_encoded(i));
    return out;
}

std::string value_enc(std::mt19937_64& rng) {
    switch (uniform(rng, 0, 9)) {
        case 0: return mmstore::codec::encode(Value::bytes(random_bytes(rng, uniform(rng, 3'000, 9'000))));
        case 1: case 2: case 3: return mmstore::codec::encode(Value::bytes(random_bytes(rng, uniform(rng, 0, 40))));
        default: return mmstore::codec::encode(Value::integer(static_cast<std::int64_t>(uniform(rng, 0, 1'000'000))));
    }
}

// One random write through `t`, mirrored on `model`.
void random_write(std::mt19937_64& rng, List::Transaction& t, std::vector<std::string>& model, bool big) {
    const std::uint64_t n = model.size();
    switch (uniform(rng, 0, 19)) {
        case 0: case 1: case 2: case 3: case 4: case 5:
            if (n > 0) {
                const std::uint64_t i = uniform(rng, 0, n - 1);
                model[i] = value_enc(rng);
                t.set_encoded(i, model[i]);
            }
            break;
        case 6: case 7: case 8: case 9: case 10: {
            const int k = static_cast<int>(uniform(rng, 1, big ? 200 : 5));
            for (int j = 0; j < k; ++j) {
                model.push_back(value_enc(rng));
                t.push_back_encoded(model.back());
            }
            break;
        }
        case 11: case 12: case 13:
            if (n > 0) {
                model.pop_back();
                t.pop_back();
            }
            break;
        case 14: {
            const std::uint64_t i = uniform(rng, 0, n);
            const std::string v = value_enc(rng);
            model.insert(model.begin() + static_cast<std::ptrdiff_t>(i), v);
            t.insert_encoded(i, v);
            break;
        }
        case 15: case 16:
            if (n > 0) {
                const std::uint64_t i = uniform(rng, 0, n - 1);
                model.erase(model.begin() + static_cast<std::ptrdiff_t>(i));
                t.erase(i);
            }
            break;
        case 17: case 18: {
            const std::uint64_t a = uniform(rng, 0, n), b = uniform(rng, a, n);
            std::vector<std::string> vs(uniform(rng, 0, 4));
            for (auto& v : vs) v = value_enc(rng);
            std::vector<std::string_view> views(vs.begin(), vs.end());
            model.erase(model.begin() + static_cast<std::ptrdiff_t>(a), model.begin() + static_cast<std::ptrdiff_t>(b));
            model.insert(model.begin() + static_cast<std::ptrdiff_t>(a), vs.begin(), vs.end());
            t.splice(a, b, views);
            break;
        }
        default:
            if (uniform(rng, 0, 9) == 0) {
                model.clear();
                t.clear();
            }
            break;
    }
}

TEST_F(ListTransactionTest, RandomTransactionsMatchAVector) {
    std::mt19937_64 rng(mmstore_test::seed(1111));
    List l(path_);
    std::vector<std::string> model;
    for (int round = 0; round < 300; ++round) {
        std::vector<std::string> mine = model;  // what the transaction should see
        std::vector<std::string> saved;
        std::optional<std::size_t> mark;
        const bool commit = uniform(rng, 0, 3) != 0;
        {
            auto t = l.transaction();
            const int ops = static_cast<int>(uniform(rng, 0, 30));
            for (int op = 0; op < ops; ++op) {
                if (!mark && uniform(rng, 0, 15) == 0) {
                    mark = t.savepoint();
                    saved = mine;
                }
                random_write(rng, t, mine, round % 40 == 0);
                ASSERT_EQ(t.size(), mine.size());
                if (!mine.empty()) {
                    const std::uint64_t i = uniform(rng, 0, mine.size() - 1);
                    mmstore::containers::WordBuf buf;
                    ASSERT_EQ(t.get_encoded(i, buf), mine[i]) << "round " << round << " op " << op;
                }
                if (mark && uniform(rng, 0, 10) == 0) {
                    t.rollback_to(*mark);
                    mine = saved;
                    mark.reset();
                }
            }
            ASSERT_EQ(l.size(), model.size());  // nothing is visible before commit()
            if (commit) {
                t.commit();
                model = mine;
            }
        }  // destroyed without commit(): rolled back
        ASSERT_EQ(contents(l), model) << "round " << round;
        if (round % 50 == 49) {
            ASSERT_NO_THROW(l.verify());
            l.sync();
        }
    }
    l.verify();
    l.close();
    List again(path_);
    EXPECT_EQ(contents(again), model);
    again.verify();
}

TEST_F(ListTransactionTest, ReadsOwnWritesAndPublishesOnlyAtCommit) {
    List l(path_);
    for (int i = 0; i < 10; ++i) l.push_back(Value::integer(i));
    List other(path_);  // a second handle reads the store as lock-free readers do
    auto t = l.transaction();
    t.set(3, Value::str("three"));
    t.push_back(Value::integer(10));
    t.erase(0);
    EXPECT_EQ(t.size(), 10u);
    EXPECT_EQ(t.get_value(2).data, "three");
    EXPECT_EQ(t.get_value(9).i, 10);
    EXPECT_EQ(other.size(), 10u);
    EXPECT_EQ(other.get_value(0).i, 0);
    t.commit();
    EXPECT_EQ(other.size(), 10u);
    EXPECT_EQ(other.get_value(0).i, 1);
    EXPECT_EQ(other.get_value(2).data, "three");
    EXPECT_EQ(other.get_value(9).i, 10);
    EXPECT_THROW(t.commit(), mmstore::Error);
    l.verify();
}

TEST_F(ListTransactionTest, DestroyedWithoutCommitRollsBackAndReleasesTheLock) {
    List l(path_);
    l.push_back(Value::integer(1));
    std::uint64_t top = 0;
    for (int round = 0; round < 10; ++round) {
        {
            auto t = l.transaction();
            for (int i = 0; i < 1'000; ++i) t.push_back(Value::bytes(std::string(100, 'x')));
            t.set(0, Value::bytes(std::string(5'000, 'y')));
        }
        EXPECT_EQ(contents(l), std::vector<std::string>{mmstore::codec::encode(Value::integer(1))});
        // The records a rolled-back transaction wrote are freed: the next one reuses their space.
        if (round == 0) top = l.stats().arena_top;
        EXPECT_EQ(l.stats().arena_top, top) << "round " << round;
    }
    l.verify();
    const pid_t child = ::fork();
    if (child == 0) {
        try {
            List c(path_);
            auto t = c.transaction();  // would block forever if the lock were still held
            t.push_back(Value::integer(2));
            t.commit();
            ::_exit(0);
        } catch (...) {
            ::_exit(1);
        }
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    EXPECT_EQ(l.size(), 2u);
}

TEST_F(ListTransactionTest, WritesThroughTheListWhileOpenMakeTheTransactionRaise) {
    List l(path_);
    l.push_back(Value::integer(1));
    auto t = l.transaction();
    t.push_back(Value::integer(2));
    l.push_back(Value::integer(3));  // same thread: the recursive lock lets it through, outside the transaction
    EXPECT_THROW(t.push_back(Value::integer(4)), mmstore::Error);
    EXPECT_THROW(t.commit(), mmstore::Error);
    t.rollback();
    EXPECT_EQ(l.size(), 2u);
    l.verify();
}

// Whether the file's list block has a commit log published (read raw, before any opener redoes it).
bool log_published(const std::string& path) {
    const std::string f = mmstore_test::read_file(path);
    std::uint64_t root = 0, log = 0;
    std::memcpy(&root, f.data() + mmstore::storage::kLiveHeaderOffset + offsetof(mmstore::storage::LiveHeader, root), 8);
    if (root + sizeof(mmstore::containers::SequenceHeader) > f.size()) return false;
    std::memcpy(&log, f.data() + root + offsetof(mmstore::containers::SequenceHeader, pending_log), 8);
    return log != 0;
}

// Element i of a list of transaction number t and length n: every element encodes both, so a list that is
// a mixture of two transactions is detected.
std::int64_t stamp(std::int64_t t, std::int64_t n, std::int64_t i) { return (t * 1'000 + n) * 1'000 + i; }

TEST_F(ListTransactionTest, KillAtAnyInstantLeavesEachTransactionWholeOrAbsent) {
    {
        List l(path_);
        l.push_back(Value::integer(stamp(0, 1, 0)));
    }
    std::mt19937_64 rng(mmstore_test::seed(1112));
    int published = 0;
    // 60 kills at random instants of transactions that shrink and grow the list and rewrite every element.
    for (int round = 0; round < 60; ++round) {
        int fds[2];
        ASSERT_EQ(::pipe(fds), 0);
        const std::uint64_t child_seed = rng();
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            ::close(fds[0]);
            try {
                std::mt19937_64 r(child_seed);
                List l(path_);
                for (int n = 0;; ++n) {
                    auto t = l.transaction();
                    const std::int64_t tn = t.get_value(0).i / 1'000'000 + 1;
                    // A new length between 1 and 300 (shrinks, grows past the capacity), every element
                    // rewritten, some as records.
                    const std::int64_t len = static_cast<std::int64_t>(uniform(r, 1, 300));
                    while (static_cast<std::int64_t>(t.size()) > len) t.pop_back();
                    for (std::int64_t i = 0; i < len; ++i) {
                        const Value v = i % 5 == 4 ? Value::str(std::to_string(stamp(tn, len, i)) + std::string(30, '.'))
                                                   : Value::integer(stamp(tn, len, i));
                        if (i < static_cast<std::int64_t>(t.size())) t.set(static_cast<std::uint64_t>(i), v);
                        else t.push_back(v);
                    }
                    t.commit();
                    if (n == 20 && ::write(fds[1], &n, sizeof n) != sizeof n) ::_exit(3);
                }
            } catch (...) {
                ::_exit(2);
            }
        }
        ::close(fds[1]);
        int got = 0;
        ASSERT_EQ(::read(fds[0], &got, sizeof got), static_cast<ssize_t>(sizeof got));  // 20 transactions done
        ::usleep(static_cast<useconds_t>(uniform(rng, 0, 2'000)));
        ::kill(child, SIGKILL);
        int status = 0;
        ASSERT_EQ(::waitpid(child, &status, 0), child);
        ::close(fds[0]);
        ASSERT_TRUE(WIFSIGNALED(status)) << "child failed before the kill, status " << status;
        if (log_published(path_)) ++published;
        List l(path_);  // repairs: a published log is redone whole
        ASSERT_NO_THROW(l.verify()) << "round " << round;
        const std::int64_t n = static_cast<std::int64_t>(l.size());
        const std::int64_t tn = l.get_value(0).i / 1'000'000;
        for (std::int64_t i = 0; i < n; ++i) {
            const Value v = l.get_value(static_cast<std::uint64_t>(i));
            const std::int64_t x = v.type == Value::Type::kInt ? v.i : std::stoll(v.data);
            ASSERT_EQ(x, stamp(tn, n, i)) << "round " << round << ": element " << i << " of " << n;
        }
        ASSERT_FALSE(log_published(path_)) << "round " << round;  // recovery applied and retired the log
    }
    // Not asserted (how many random kills land where is up to the scheduler): said, so a run that covered
    // no published log can be told from one that did.
    std::cout << "[ info ] " << published << " kill(s) landed while a commit log was published\n";
}

// Rotations: each transaction moves the first element to the end (an erase at the front: every position
// changes, so the commit log is as big as the list while the building of the transaction is cheap, and kills
// often land while the log is published). The list is always n consecutive numbers mod n from some start.
TEST_F(ListTransactionTest, KillDuringRotationsLeavesAWholeRotation) {
    constexpr std::int64_t kN = 4'000;
    {
        List l(path_);
        for (std::int64_t i = 0; i < kN; ++i) l.push_back(Value::integer(i));
    }
    std::mt19937_64 rng(mmstore_test::seed(1113));
    int published = 0, published_open = 0;  // kills while a log was published (with a handle kept open)
    // Until several kills landed while a commit log was published, one of them with a handle kept open, at
    // most 300 rounds.
    for (int round = 0; round < 300 && (published < 3 || published_open < 1); ++round) {
        // Odd rounds keep a handle open across the kill: the store is then not repaired at the next open
        // (not alone) but by the recovery of the next lock (the robust mutex's EOWNERDEAD), while it is open.
        std::optional<List> watcher;
        if (round % 2 == 1) watcher.emplace(path_);
        int fds[2];
        ASSERT_EQ(::pipe(fds), 0);
        const pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            ::close(fds[0]);
            try {
                List l(path_);
                for (int n = 0;; ++n) {
                    auto t = l.transaction();
                    const Value first = t.get_value(0);
                    t.erase(0);
                    t.push_back(first);
                    t.commit();
                    if (n == 5 && ::write(fds[1], &n, sizeof n) != sizeof n) ::_exit(3);
                }
            } catch (...) {
                ::_exit(2);
            }
        }
        ::close(fds[1]);
        int got = 0;
        ASSERT_EQ(::read(fds[0], &got, sizeof got), static_cast<ssize_t>(sizeof got));
        ::usleep(static_cast<useconds_t>(uniform(rng, 0, 3'000)));
        ::kill(child, SIGKILL);
        int status = 0;
        ASSERT_EQ(::waitpid(child, &status, 0), child);
        ::close(fds[0]);
        ASSERT_TRUE(WIFSIGNALED(status)) << "child failed before the kill, status " << status;
        if (log_published(path_)) {
            ++published;
            if (watcher) ++published_open;
        }
        if (watcher) {
            // Lock-free reads before any recovery: through the published log, if any, a whole rotation.
            const std::int64_t s0 = watcher->get_value(0).i;
            ASSERT_EQ(watcher->get_value(kN - 1).i, (s0 + kN - 1) % kN) << "round " << round;
        }
        List l(path_);
        ASSERT_NO_THROW(l.verify()) << "round " << round;  // takes the lock: recovery (redo) first
        ASSERT_EQ(static_cast<std::int64_t>(l.size()), kN);
        const std::int64_t start = l.get_value(0).i;
        for (std::int64_t i = 0; i < kN; ++i)
            ASSERT_EQ(l.get_value(static_cast<std::uint64_t>(i)).i, (start + i) % kN) << "round " << round << " element " << i;
        ASSERT_FALSE(log_published(path_));
    }
    std::cout << "[ info ] " << published << " kill(s) landed while a commit log was published, " << published_open
              << " of them with a handle kept open\n";
}

}  // namespace
