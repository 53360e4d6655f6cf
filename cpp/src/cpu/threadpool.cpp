// cpu/threadpool.cpp — tasks claimed from a counter, spin-then-sleep workers; see threadpool.h.
#include "cpu/threadpool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define APLS_PAUSE() _mm_pause()
#else
#define APLS_PAUSE() ((void)0)
#endif

namespace apls::cpu {

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this] { worker(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_.store(true);
        generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
    if (n_threads_ == 1) {
        fn(0, 1);
        return;
    }
    job_ = &fn;
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    next_task_.store(0, std::memory_order_release);  // the tasks of this dispatch are open
    {
        std::lock_guard<std::mutex> lock(mutex_);  // pairs with the sleepers' predicate check
        generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    work();
    // Every task is claimed; wait for those still running elsewhere. Yield once the wait is no
    // longer short, so that a descheduled thread gets the core instead of this one spinning.
    for (int spins = 0; done_.load(std::memory_order_acquire) != n_threads_; ++spins) {
        if (spins < 4096) APLS_PAUSE();
        else std::this_thread::yield();
    }
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
}

void ThreadPool::work() {
    for (;;) {
        // One atomic add claims a task. A thread that woke late may claim one of a later dispatch:
        // it runs that task, which the later run() waits for, so job_ is the one it belongs to.
        const int64_t task = next_task_.fetch_add(1, std::memory_order_acq_rel);
        if (task >= n_threads_) return;  // none left
        try {
            (*job_)(static_cast<int>(task), n_threads_);
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
        }
        done_.fetch_add(1, std::memory_order_acq_rel);
    }
}

void ThreadPool::worker() {
    uint64_t seen = 0;
    for (;;) {
        // Spin for a while: the next dispatch of a decode step usually comes within microseconds.
        auto t0 = std::chrono::steady_clock::now();
        int spins = 0;
        while (generation_.load(std::memory_order_acquire) == seen) {
            if (++spins < 4096) APLS_PAUSE();
            else std::this_thread::yield();
            if (spins % 1024 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(2)) {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return generation_.load() != seen; });
                break;
            }
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stop_.load()) return;
        work();
    }
}

}  // namespace apls::cpu
