// cpu/threadpool.h — a persistent pool for the forward pass.
//
// run(fn) calls fn(task, n_tasks) once for every task < n_tasks = size() and returns when all
// are done. The split into tasks is fixed (it decides what each call computes, so results do
// not depend on timing). Thread i (the caller is 0) claims task i first, so that a thread
// works on the same rows dispatch after dispatch; a thread done with its own task then claims
// any task still unclaimed. When a worker is descheduled (more busy threads than CPUs: two
// engines on one machine, a build beside it), the threads that are running take its task
// instead of waiting for the scheduler to bring it back. A decode step dispatches a few hundred
// times, so workers spin briefly before sleeping: a dispatch costs about a microsecond while the
// pool is hot. An exception thrown by a task is rethrown by run() once every task has ended.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace apls::cpu {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }
    void run(const std::function<void(int task, int n_tasks)>& fn);

private:
    void worker(int own);
    void work(int own, uint64_t generation);  // task `own`, then any unclaimed, of this dispatch
    bool claim(int task, uint64_t generation);
    void run_task(int task);

    // Per task, the last dispatch (generation) that claimed it; a cache line each, so that a
    // thread claiming its own task does not contend with the others.
    struct alignas(64) Slot {
        std::atomic<uint64_t> claimed{0};
    };

    int n_threads_;
    std::vector<std::thread> workers_;
    const std::function<void(int, int)>* job_ = nullptr;
    std::atomic<uint64_t> generation_{0};  // one per dispatch; workers wake when it changes
    std::vector<Slot> slots_;
    std::atomic<int> done_{0};             // tasks of this dispatch that have ended
    std::exception_ptr error_;             // the first task's exception (guarded by mutex_)
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::condition_variable wake_;
};

// Split [0, n) into nth nearly equal parts, aligned to `align`; returns [begin, end) of part ith.
inline void split_range(int64_t n, int ith, int nth, int64_t align, int64_t* begin, int64_t* end) {
    const int64_t units = (n + align - 1) / align;
    const int64_t per = units / nth, extra = units % nth;
    const int64_t u0 = ith * per + (ith < extra ? ith : extra);
    const int64_t u1 = u0 + per + (ith < extra ? 1 : 0);
    *begin = u0 * align < n ? u0 * align : n;
    *end = u1 * align < n ? u1 * align : n;
}

}  // namespace apls::cpu
