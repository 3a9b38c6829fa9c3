// A persistent thread pool: parallel_for hands out task indices through an atomic counter and the calling thread
// works too. Between jobs the workers spin for a short while (kSpin) before sleeping on a condition variable:
// a training step issues kernels microseconds apart, and waking a sleeping thread costs tens of microseconds
// (more in a VM), which is as long as a whole small kernel. One pool per process, sized to the hardware's
// concurrency (or LOOM_THREADS).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace loom {

class ThreadPool {
 public:
  explicit ThreadPool(int threads) : size_(threads < 1 ? 1 : threads) {
    for (int i = 1; i < size_; i++) workers_.emplace_back([this] { loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return size_; }

  // Runs fn(i) for i in [0, n), spread over the pool. Returns when all are done.
  void parallel_for(int n, const std::function<void(int)>& fn) {
    if (n <= 0) return;
    if (size_ == 1 || n == 1) {
      for (int i = 0; i < n; i++) fn(i);
      return;
    }
    std::lock_guard<std::mutex> serial(call_);  // one parallel region at a time
    {
      std::lock_guard<std::mutex> l(m_);
      job_ = &fn;
      total_ = n;
      next_.store(0);
      pending_.store(size_ - 1);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work();
    if (!spin([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> l(m_);
      done_cv_.wait(l, [this] { return pending_.load() == 0; });
    }
    job_ = nullptr;
  }

 private:
  static constexpr auto kSpin = std::chrono::microseconds(50);

  // Busy-waits up to kSpin for ready(); false when it timed out.
  template <typename F>
  static bool spin(F ready) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (int i = 0;; i++) {
      if (ready()) return true;
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) return false;
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      __asm__ __volatile__("yield");
#endif
    }
  }
  void work() {
    for (int i = next_.fetch_add(1); i < total_; i = next_.fetch_add(1)) (*job_)(i);
  }
  void loop() {
    unsigned long seen = 0;
    for (;;) {
      spin([&] { return generation_.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> l(m_);  // also orders the reads of job_ and total_ after their writes
        cv_.wait(l, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (stop_) return;
      }
      work();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> l(m_);  // pairs with the caller's wait, so the wake-up cannot be lost
        done_cv_.notify_one();
      }
    }
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex m_, call_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<int> next_{0};
  int total_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<unsigned long> generation_{0};
  bool stop_ = false;
};

inline ThreadPool& pool() {
  static ThreadPool p([] {
    const char* env = std::getenv("LOOM_THREADS");
    int n = env ? std::atoi(env) : (int)std::thread::hardware_concurrency();
    return n > 0 ? n : 1;
  }());
  return p;
}

}  // namespace loom
