// test_threadpool.cpp — every task of a dispatch runs exactly once, whichever thread takes it,
// also when the pool has more threads than CPUs; a task's exception reaches the caller.
#if defined(__linux__)
#include <sched.h>
#endif

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "check.h"
#include "cpu/threadpool.h"

using apls::cpu::ThreadPool;

namespace {

// n_dispatch dispatches; per dispatch, every task index must be seen once with n_tasks = size().
void each_task_once(ThreadPool& pool, int n_dispatch) {
    const int n = pool.size();
    std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
    std::atomic<int> bad_nth{0};
    int wrong = 0;
    for (int d = 0; d < n_dispatch; ++d) {
        for (auto& r : runs) r.store(0);
        pool.run([&](int task, int nth) {
            if (nth != n) bad_nth.fetch_add(1);
            runs[static_cast<size_t>(task)].fetch_add(1);
        });
        for (auto& r : runs) wrong += r.load() != 1;
    }
    CHECK(wrong == 0);
    CHECK(bad_nth.load() == 0);
}

}  // namespace

APLS_TEST(every_task_runs_once_per_dispatch) {
    for (int threads : {1, 2, 3, 8}) {
        ThreadPool pool(threads);
        CHECK(pool.size() == threads);
        each_task_once(pool, 3000);
    }
    ThreadPool clamped(0);  // no threads asked: the caller alone
    CHECK(clamped.size() == 1);
    each_task_once(clamped, 10);
}

// Results written per task land where a static split says, after run() returns: the caller
// sees every task's writes (the same work split as the forward pass's ops).
APLS_TEST(tasks_writes_are_visible_after_run) {
    ThreadPool pool(4);
    std::vector<int> out(1000);
    for (int d = 1; d <= 200; ++d) {
        pool.run([&](int task, int nth) {
            int64_t b, e;
            apls::cpu::split_range(static_cast<int64_t>(out.size()), task, nth, 16, &b, &e);
            for (int64_t i = b; i < e; ++i) out[static_cast<size_t>(i)] = d * 7 + static_cast<int>(i);
        });
        int wrong = 0;
        for (size_t i = 0; i < out.size(); ++i) wrong += out[i] != d * 7 + static_cast<int>(i);
        CHECK(wrong == 0);
    }
}

#if defined(__linux__)
// Eight threads on one CPU (a pool sized for the host inside a one-CPU container): the threads
// that run take the tasks of those the scheduler set aside, and every dispatch completes.
APLS_TEST(more_threads_than_cpus_still_run_every_task) {
    cpu_set_t all;
    CHECK(sched_getaffinity(0, sizeof(all), &all) == 0);
    int first = 0;
    while (!CPU_ISSET(first, &all)) ++first;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    CHECK(sched_setaffinity(0, sizeof(one), &one) == 0);  // the pool's threads inherit it
    {
        ThreadPool pool(8);
        each_task_once(pool, 2000);
    }
    CHECK(sched_setaffinity(0, sizeof(all), &all) == 0);
}
#endif

// A task that throws (whichever thread runs it): run() waits for the other tasks, then rethrows
// the exception; the pool keeps working.
APLS_TEST(a_tasks_exception_reaches_the_caller) {
    ThreadPool pool(4);
    for (int bad = 0; bad < 4; ++bad) {
        std::atomic<int> ran{0};
        bool caught = false;
        try {
            pool.run([&](int task, int) {
                ran.fetch_add(1);
                if (task == bad) throw std::runtime_error("task failed");
            });
        } catch (const std::runtime_error& e) {
            caught = std::string(e.what()) == "task failed";
        }
        CHECK(caught);
        CHECK(ran.load() == 4);
        each_task_once(pool, 50);
    }
}

APLS_TEST_MAIN()
