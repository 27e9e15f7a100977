// mmstore/vector.hpp
//
// mmstore::Vector<T> -- a persistent std::vector of trivially copyable T in a file. Elements are stored
// raw (host layout of T; keep T to fixed-width fields for portable files). The element type is checked at
// open: the file records sizeof(T) and a caller-chosen 64-bit type tag.
//
// Lifetimes: data(), span(), operator[] and iterators point into the mapping and stay valid until the next
// call that may reallocate (push_back beyond capacity, resize, reserve, clear) or close() -- as for
// std::vector. Crash safety: push_back publishes with one 8-byte store of the count; growth builds aside.
// An element wider than 8 bytes written in place through a reference can be torn by a kill mid-write.
// Thread safety: none. Process safety: many processes may open it read-write at once, as Dict (each write
// holds the store's process-shared lock; reads are lock-free and retried when they raced a writer).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "mmstore/containers/sequence.hpp"
#include "mmstore/containers/store.hpp"
#include "mmstore/dict.hpp"

namespace mmstore {

template <class T>
    requires std::is_trivially_copyable_v<T>
class Vector {
public:
    using value_type = T;
    using iterator = T*;
    using const_iterator = const T*;

    Vector() = default;
    explicit Vector(const std::string& path, OpenOptions options = {}, std::uint64_t type_tag = 0) {
        options.elem_size = sizeof(T);
        options.elem_tag = type_tag;
        store_ = std::make_unique<containers::Store>();
        store_->open(path, storage::StoreKind::kVector, options);
        seq_ = std::make_unique<containers::Sequence>(store_.get(), sizeof(T));
        // Captures the heap objects, not `this`, so that the callback survives a move of the Vector.
        auto rebuild = [store = store_.get(), seq = seq_.get()] {
            store->arena().rebuild([store, seq](const alloc::Arena::Visit& v) { v(store->root(), seq->root_bytes()); });
        };
        store_->set_recovery(rebuild);
        store_->set_relocation([seq = seq_.get()] { return seq->relocate_down(); });
        containers::attach_root(*store_, [&] { seq_->format(); }, [&] { seq_->check_root(); }, rebuild);
    }
    Vector(Vector&&) noexcept = default;
    Vector& operator=(Vector&&) noexcept = default;
    ~Vector() {
        if (store_ && store_->is_open()) {
            try {
                store_->close();
            } catch (...) {
                store_->abandon();
            }
        }
    }

    std::size_t size() const { check(); return seq_->size(); }
    bool empty() const { return size() == 0; }
    std::size_t capacity() const { check(); return seq_->capacity(); }
    T* data() { check(); return reinterpret_cast<T*>(seq_->data()); }
    const T* data() const { check(); return reinterpret_cast<const T*>(seq_->data()); }
    std::span<T> span() { return {data(), size()}; }
    std::span<const T> span() const { return {data(), size()}; }
    T& operator[](std::size_t i) { return data()[i]; }
    const T& operator[](std::size_t i) const { return data()[i]; }
    T& at(std::size_t i) {
        if (i >= size()) throw std::out_of_range("Vector index " + std::to_string(i) + " out of range");
        return data()[i];
    }
    iterator begin() { return data(); }
    iterator end() { return data() + size(); }
    const_iterator begin() const { return data(); }
    const_iterator end() const { return data() + size(); }

    void push_back(const T& v) {
        containers::Store::WriteGuard g(*store_);
        seq_->push_back(&v);
        store_->after_mutation();
    }
    void pop_back() {
        containers::Store::WriteGuard g(*store_);
        if (seq_->size() == 0) throw std::out_of_range("pop_back on an empty Vector");
        seq_->pop_back();
    }
    void resize(std::size_t n) {
        containers::Store::WriteGuard g(*store_);
        seq_->resize(n);
        store_->after_mutation();
    }
    void reserve(std::size_t n) {
        containers::Store::WriteGuard g(*store_);
        seq_->reserve(n);
    }
    void clear() { resize(0); }

    // The store's write lock (see Dict::lock). Element writes through data()/operator[] are plain stores:
    // processes that share a Vector and write elements hold lock() around them.
    void lock() { store_->check_writable(); store_->lock_write(); }
    void unlock() { store_->unlock_write(); }

    const std::string& path() const { return store_->path(); }
    bool is_open() const noexcept { return store_ && store_->is_open(); }
    void sync() { store_->sync(); }
    void close() { store_->close(); }
    void verify() const {
        check();
        seq_->check_root();
        store_->arena().verify([this](const alloc::Arena::Visit& v) { v(store_->root(), seq_->root_bytes()); });
    }
    Stats stats() const {
        check();
        return detail::make_stats(*store_, seq_->size(), seq_->capacity());
    }

private:
    void check() const { store_->check_open(); }
    std::unique_ptr<containers::Store> store_;
    std::unique_ptr<containers::Sequence> seq_;
};

}  // namespace mmstore
