// A persistent thread pool: workers sleep on a condition variable between jobs; parallel_for hands out task
// indices through an atomic counter and the calling thread works too. One pool per process, sized to the
// hardware's concurrency (or LOOM_THREADS).
#pragma once
#include <atomic>
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
      generation_++;
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
      pending_ = size_ - 1;
      generation_++;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> l(m_);
    done_cv_.wait(l, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void work() {
    for (int i = next_.fetch_add(1); i < total_; i = next_.fetch_add(1)) (*job_)(i);
  }
  void loop() {
    unsigned long seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
      }
      work();
      {
        std::lock_guard<std::mutex> l(m_);
        if (--pending_ == 0) done_cv_.notify_one();
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
  int pending_ = 0;
  unsigned long generation_ = 0;
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
