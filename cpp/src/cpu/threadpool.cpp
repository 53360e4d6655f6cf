// cpu/threadpool.cpp — own task first, then unclaimed ones; spin-then-sleep workers; see threadpool.h.
#include "cpu/threadpool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define APLS_PAUSE() _mm_pause()
#else
#define APLS_PAUSE() ((void)0)
#endif

namespace apls::cpu {

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads), slots_(n_threads_) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
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
    const uint64_t g = generation_.load(std::memory_order_relaxed) + 1;
    {
        std::lock_guard<std::mutex> lock(mutex_);  // pairs with the sleepers' predicate check
        generation_.store(g, std::memory_order_release);  // publishes job_: the tasks of g are open
    }
    wake_.notify_all();
    work(0, g);
    // Every task is claimed; wait for those still running elsewhere. Yield once the wait is no
    // longer short, so that a descheduled thread gets the core instead of this one spinning.
    for (int spins = 0; done_.load(std::memory_order_acquire) != n_threads_; ++spins) {
        if (spins < 4096) APLS_PAUSE();
        else std::this_thread::yield();
    }
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
}

// A task is claimed once per dispatch: its slot moves from an earlier generation to this one.
// A thread that woke late holds an older generation than the slots and claims nothing.
bool ThreadPool::claim(int task, uint64_t generation) {
    std::atomic<uint64_t>& slot = slots_[static_cast<size_t>(task)].claimed;
    uint64_t c = slot.load(std::memory_order_relaxed);
    return c < generation && slot.compare_exchange_strong(c, generation, std::memory_order_acq_rel);
}

void ThreadPool::run_task(int task) {
    try {
        (*job_)(task, n_threads_);
    } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
    }
    done_.fetch_add(1, std::memory_order_acq_rel);
}

void ThreadPool::work(int own, uint64_t generation) {
    if (claim(own, generation)) run_task(own);
    for (int i = 1; i < n_threads_; ++i) {
        const int task = (own + i) % n_threads_;
        if (claim(task, generation)) run_task(task);
    }
}

void ThreadPool::worker(int own) {
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
        work(own, seen);
    }
}

}  // namespace apls::cpu
