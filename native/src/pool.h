// A persistent thread pool: parallel_for hands out task indices through an atomic counter and the calling thread
// works too. Between jobs the workers spin for a short while (kSpin) before sleeping on a condition variable:
// a training step issues kernels microseconds apart, and waking a sleeping thread costs tens of microseconds
// (more in a VM), which is as long as a whole small kernel. One pool per process, sized to the hardware's
// concurrency (or LOOM_THREADS).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
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
  // The caller works too, and waits only for the workers that joined the job before it ran out of tasks: a worker
  // still waking up (tens of microseconds from a sleep, more in a VM) when the caller has taken every task finds the
  // job closed and goes back to waiting. Before, the caller waited for every worker to wake even with nothing left
  // for it to do, which made a matrix-vector product of decoding (one row, ~20 µs of work per call, the worker
  // asleep between the calls of a token) slower on 2 threads than on 1. Which thread runs a task never changes what
  // the task computes, so results are the same bits either way.
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
      const unsigned long generation = generation_.load() + 1;
      gate_.store(generation << kTagShift, std::memory_order_release);  // open, nobody inside
      generation_.store(generation, std::memory_order_release);
    }
    cv_.notify_all();
    work();
    // Close the job: from here no worker joins it; wait for those inside (they are running its last tasks).
    const uint64_t before = gate_.fetch_or(kClosed, std::memory_order_acq_rel);
    if ((before & kInside) != 0 && !spin([this] { return (gate_.load(std::memory_order_acquire) & kInside) == 0; })) {
      std::unique_lock<std::mutex> l(m_);
      done_cv_.wait(l, [this] { return (gate_.load(std::memory_order_acquire) & kInside) == 0; });
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
  // Joins the open job of `generation`: false when it is closed (the caller ran out of tasks) or a later one.
  bool join(unsigned long generation) {
    uint64_t g = gate_.load(std::memory_order_acquire);
    for (;;) {
      if ((g >> kTagShift) != (generation & kTagMask) || (g & kClosed)) return false;
      if (gate_.compare_exchange_weak(g, g + 1, std::memory_order_acq_rel, std::memory_order_acquire)) return true;
    }
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
      if (!join(seen)) continue;
      work();
      const uint64_t before = gate_.fetch_sub(1, std::memory_order_acq_rel);
      if ((before & kInside) == 1 && (before & kClosed)) {
        std::lock_guard<std::mutex> l(m_);  // pairs with the caller's wait, so the wake-up cannot be lost
        done_cv_.notify_one();
      }
    }
  }

  // gate_: the workers inside the current job (bits 0-15), whether it is closed (bit 16), and its generation's low
  // bits (from bit 17), changed only by atomic operations, so that joining and closing cannot cross.
  static constexpr uint64_t kInside = 0xffff, kClosed = uint64_t(1) << 16;
  static constexpr int kTagShift = 17;
  static constexpr uint64_t kTagMask = (uint64_t(1) << (64 - kTagShift)) - 1;
  std::atomic<uint64_t> gate_{kClosed};

  int size_;
  std::vector<std::thread> workers_;
  std::mutex m_, call_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<int> next_{0};
  int total_ = 0;
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
