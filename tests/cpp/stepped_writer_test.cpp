// tests/cpp/stepped_writer_test.cpp -- a single write seen by a lock-free reader of another process at
// every instruction of the writer.
//
// The writer runs in a child traced with ptrace and is single-stepped through one set() or erase(); after
// each instruction (the writer stopped there, as SIGSTOP or a descheduling can stop it) the parent reads
// the dict without the lock, as any other process would. The write must look atomic: len(), iteration and
// lookups agree with each other and show either the state before the write or the state after it, and
// once a reader has seen the state after, it never sees the one before again.
//
// This is the deterministic form of tests/python/test_shared_dict_processes.py::
// test_stopped_lock_holder_does_not_block_readers, which stops a writer at a random instant.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "mmstore/codec/value.hpp"
#include "mmstore/dict.hpp"
#include "mmstore/list.hpp"
#include "test_util.hpp"

namespace {

using mmstore::Dict;
using mmstore::List;
using mmstore::OpenOptions;
using Model = std::map<std::string, std::string>;

// Everything a lock-free reader can observe: len(), iteration, and a lookup of every key it knows of.
struct Observed {
    std::uint64_t len = 0;
    Model items;                                      // what iteration yields
    std::map<std::string, std::optional<std::string>> got;  // lookups of the keys of `before` and `after`
};

Observed observe(const Dict& rd, const Model& before, const Model& after) {
    Observed o;
    o.len = rd.size();
    rd.for_each([&](std::string_view k, std::string_view v) { o.items.emplace(std::string(k), std::string(v)); });
    for (const Model* m : {&before, &after})
        for (const auto& [k, v] : *m) {
            auto got = rd.get_encoded(k);
            o.got[k] = got ? std::optional<std::string>(*got) : std::nullopt;
        }
    return o;
}

// Which of the two states `o` shows whole: 0 before, 1 after, -1 neither (a torn read). `items`: whether
// iteration must show it too (a transaction's commit promises one instant to lookups and len() only;
// iteration reads each key as of some instant during the pass, docs/design.md).
int state_of(const Observed& o, const Model& before, const Model& after, bool items = true) {
    for (int s = 0; s < 2; ++s) {
        const Model& m = s == 0 ? before : after;
        if (o.len != m.size() || (items && o.items != m)) continue;
        bool lookups = true;
        for (const auto& [k, v] : o.got) {
            const auto it = m.find(k);
            if (it == m.end() ? v.has_value() : v != it->second) lookups = false;
        }
        if (lookups) return s;
    }
    return -1;
}

std::string describe(const Observed& o) {
    std::string s = "len " + std::to_string(o.len) + ", iterated " + std::to_string(o.items.size()) + " {";
    for (const auto& [k, v] : o.items) s += k + ":" + std::to_string(v.size()) + "B ";
    s += "}, lookups {";
    for (const auto& [k, v] : o.got) s += k + (v ? ":" + std::to_string(v->size()) + "B " : ":absent ");
    return s + "}";
}

// What a reader sees: which state it shows whole (0 before, 1 after, -1 neither) and a description of it.
using Look = std::function<std::pair<int, std::string>()>;

class SteppedWriterTest : public ::testing::Test {
protected:
    // Applies `write` in a traced child that opens the store with `open`, stepping it one instruction at a
    // time and checking `look` (a lock-free reader in this process) after each. Returns the number of
    // instructions stepped.
    template <class Store>
    long step_through(const std::function<void(Store&)>& write, const Look& look) {
        EXPECT_EQ(look().first, 0) << "the store is not in the state before: " << look().second;
        const pid_t child = ::fork();
        if (child == 0) {
            int rc = 0;
            try {
                Store d(path_);
                // Where ptrace is not permitted (seccomp, Yama scope 3), SIGSTOP would stop an untraced
                // child that the parent never waits for: exit instead, and the parent skips.
                if (::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) ::_exit(kNoPtrace);
                ::raise(SIGSTOP);  // the parent starts stepping from here
                write(d);
                ::raise(SIGSTOP);  // ... and stops here
                d.close();
            } catch (...) {
                rc = 2;
            }
            ::_exit(rc);
        }
        mmstore_test::KillOnExit guard{child};
        int status = 0;
        EXPECT_EQ(::waitpid(child, &status, 0), child);
        if (WIFEXITED(status)) {
            guard.pid = 0;
            ADD_FAILURE() << "the writer could not be traced: " << mmstore_test::describe_status(status);
            return 0;
        }
        EXPECT_TRUE(WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP) << mmstore_test::describe_status(status);
        if (!WIFSTOPPED(status)) return 0;
        long steps = 0;
        int seen = 0;  // the newest state observed so far
        for (;;) {
            if (::ptrace(PTRACE_SINGLESTEP, child, nullptr, nullptr) != 0) {
                ADD_FAILURE() << "PTRACE_SINGLESTEP failed at step " << steps;
                return steps;
            }
            if (::waitpid(child, &status, 0) != child || !WIFSTOPPED(status)) {
                ADD_FAILURE() << "the writer ended while stepped: " << mmstore_test::describe_status(status);
                return steps;
            }
            if (WSTOPSIG(status) == SIGSTOP) break;  // the write returned
            if (WSTOPSIG(status) != SIGTRAP) {
                ADD_FAILURE() << "the writer got signal " << WSTOPSIG(status) << " at step " << steps;
                return steps;
            }
            ++steps;
            const auto [s, what] = look();
            if (s < 0 || s < seen) {
                ADD_FAILURE() << "after instruction " << steps << " of the write the reader sees "
                              << (s < 0 ? "neither state: " : "the state before again: ") << what;
                return steps;
            }
            seen = s;
        }
        EXPECT_EQ(look().first, 1) << "the write did not land: " << look().second;
        ::ptrace(PTRACE_CONT, child, nullptr, nullptr);
        guard.pid = 0;
        EXPECT_EQ(mmstore_test::wait_exit(child), 0);
        return steps;
    }

    void SetUp() override { path_ = dir_.file("stepped.mmstore"); }

    static constexpr int kNoPtrace = 77;
    // Whether this process may trace its children (seccomp or Yama scope 3 can forbid it): the tests skip
    // where it may not, rather than fail for a reason that is not mmstore's.
    static bool ptrace_permitted() {
        const pid_t child = ::fork();
        if (child == 0) ::_exit(::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) == 0 ? 0 : kNoPtrace);
        return mmstore_test::wait_exit(child) == 0;
    }
    mmstore_test::TempDir dir_;
    std::string path_;
};

std::string enc_str(const std::string& s) { return mmstore::codec::encode(mmstore::codec::Value::str(s)); }

TEST_F(SteppedWriterTest, EverySingleWriteIsAtomicForLockFreeReadersAtEveryInstruction) {
    if (!ptrace_permitted()) GTEST_SKIP() << "ptrace(PTRACE_TRACEME) is not permitted here";
    Model model;
    { Dict d(path_); }
    long total = 0;
    auto apply = [&](const std::string& what, const std::function<void(Model&)>& change,
                     const std::function<void(Dict&)>& write, bool items = true) {
        Model after = model;
        change(after);
        OpenOptions ro;
        ro.readonly = true;
        const Dict rd(path_, ro);
        const long steps = step_through<Dict>(write, [&] {
            const Observed o = observe(rd, model, after);
            return std::pair(state_of(o, model, after, items), describe(o));
        });
        EXPECT_GT(steps, 20) << what << ": the write was not stepped";
        total += steps;
        model = std::move(after);
        return !::testing::Test::HasFailure();
    };
    // Inserts up to and past the first rebuild of the smallest table (10 entries), small values inline and
    // large ones in records. Those in the middle are like their neighbours and are written unstepped (each
    // stepped write is ~4,000 instructions, slow under the sanitizers).
    for (int i = 0; i < 13; ++i) {
        const std::string k = enc_str("k" + std::to_string(i));
        const std::string v = enc_str(std::string(i % 2 ? 40 : 3, static_cast<char>('a' + i)));
        if (i >= 2 && i < 8) {
            Dict(path_).set_encoded(k, v);
            model[k] = v;
            continue;
        }
        if (!apply("insert " + std::to_string(i), [&](Model& m) { m[k] = v; }, [&](Dict& d) { d.set_encoded(k, v); })) return;
    }
    const std::string k3 = enc_str("k3"), k5 = enc_str("k5"), k12 = enc_str("k12");
    const std::string big = enc_str(std::string(300, 'z')), small = enc_str("s");
    ASSERT_TRUE(apply("overwrite with a record", [&](Model& m) { m[k3] = big; }, [&](Dict& d) { d.set_encoded(k3, big); }));
    ASSERT_TRUE(apply("overwrite inline", [&](Model& m) { m[k3] = small; }, [&](Dict& d) { d.set_encoded(k3, small); }));
    ASSERT_TRUE(apply("erase", [&](Model& m) { m.erase(k5); }, [&](Dict& d) { d.erase_encoded(k5); }));
    ASSERT_TRUE(apply("erase the last entry", [&](Model& m) { m.erase(k12); }, [&](Dict& d) { d.erase_encoded(k12); }));
    ASSERT_TRUE(apply("insert again", [&](Model& m) { m[k5] = big; }, [&](Dict& d) { d.set_encoded(k5, big); }));
    const std::string k7 = enc_str("k7"), k20 = enc_str("k20");
    ASSERT_TRUE(apply(
        "a transaction's commit",
        [&](Model& m) {
            m[k3] = big;
            m.erase(k7);
            m[k20] = small;
        },
        [&](Dict& d) {
            auto t = d.transaction();
            t.set_encoded(k3, big);
            t.erase_encoded(k7);
            t.set_encoded(k20, small);
            t.commit();
        },
        false));
    ASSERT_TRUE(apply("clear", [&](Model& m) { m.clear(); }, [&](Dict& d) { d.clear(); }));
    RecordProperty("instructions_stepped", static_cast<int>(total));
}

}  // namespace

namespace {

// A List's single-element writes, read the way a lock-free reader does: len(), then every element.
TEST_F(SteppedWriterTest, EverySingleListWriteIsAtomicForLockFreeReadersAtEveryInstruction) {
    if (!ptrace_permitted()) GTEST_SKIP() << "ptrace(PTRACE_TRACEME) is not permitted here";
    std::vector<std::string> model;
    { List l(path_); }
    auto apply = [&](const std::string& what, const std::function<void(std::vector<std::string>&)>& change,
                     const std::function<void(List&)>& write) {
        std::vector<std::string> after = model;
        change(after);
        OpenOptions ro;
        ro.readonly = true;
        const List rl(path_, ro);
        const long steps = step_through<List>(write, [&] {
            std::vector<std::string> seen;
            std::string desc;
            try {
                const std::uint64_t n = rl.size();
                for (std::uint64_t i = 0; i < n; ++i) seen.push_back(rl.get_encoded(i));
            } catch (const std::exception& e) {
                return std::pair(-1, std::string("a read raised: ") + e.what());
            }
            for (const auto& v : seen) desc += std::to_string(v.size()) + "B ";
            return std::pair(seen == model ? 0 : seen == after ? 1 : -1, "len " + std::to_string(seen.size()) + ": " + desc);
        });
        EXPECT_GT(steps, 20) << what << ": the write was not stepped";
        model = std::move(after);
        return !::testing::Test::HasFailure();
    };
    for (int i = 0; i < 10; ++i) {  // past the first growth of the block (8 elements); 2..6 unstepped
        const std::string v = enc_str(std::string(i % 2 ? 40 : 3, static_cast<char>('a' + i)));
        if (i >= 2 && i < 7) {
            List(path_).push_back_encoded(v);
            model.push_back(v);
            continue;
        }
        ASSERT_TRUE(apply("append " + std::to_string(i), [&](auto& m) { m.push_back(v); }, [&](List& l) { l.push_back_encoded(v); }));
    }
    const std::string big = enc_str(std::string(300, 'z')), small = enc_str("s");
    ASSERT_TRUE(apply("set to a record", [&](auto& m) { m[4] = big; }, [&](List& l) { l.set_encoded(4, big); }));
    ASSERT_TRUE(apply("set inline", [&](auto& m) { m[4] = small; }, [&](List& l) { l.set_encoded(4, small); }));
    ASSERT_TRUE(apply("pop", [&](auto& m) { m.pop_back(); }, [&](List& l) { l.pop_back(); }));
    ASSERT_TRUE(apply("insert in the middle", [&](auto& m) { m.insert(m.begin() + 3, big); },
                      [&](List& l) { l.insert_encoded(3, big); }));
    ASSERT_TRUE(apply("erase in the middle", [&](auto& m) { m.erase(m.begin() + 2); }, [&](List& l) { l.erase(2); }));
    ASSERT_TRUE(apply(
        "a transaction's commit",
        [&](auto& m) {
            m[0] = big;
            m.erase(m.begin() + 1);
            m.push_back(small);
        },
        [&](List& l) {
            auto t = l.transaction();
            t.set_encoded(0, big);
            t.erase(1);
            t.push_back_encoded(small);
            t.commit();
        }));
}

}  // namespace
