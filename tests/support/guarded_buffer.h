// A buffer whose last byte sits right before an inaccessible page, so any read
// past the end faults (SIGSEGV) even without sanitizers. Test-only, Linux.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace sekisho::test {

class guarded_buffer {
public:
    explicit guarded_buffer(size_t capacity = 4096) {
        page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
        data_len_ = (capacity + page_ - 1) / page_ * page_;
        void* m = mmap(nullptr, data_len_ + page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) throw std::runtime_error("mmap failed");
        base_ = static_cast<uint8_t*>(m);
        if (mprotect(base_ + data_len_, page_, PROT_NONE) != 0) throw std::runtime_error("mprotect failed");
    }
    ~guarded_buffer() { munmap(base_, data_len_ + page_); }
    guarded_buffer(const guarded_buffer&) = delete;
    guarded_buffer& operator=(const guarded_buffer&) = delete;

    // Copies `n` bytes so that they end exactly at the guard page.
    const uint8_t* place(const uint8_t* src, size_t n) {
        if (n > data_len_) throw std::length_error("guarded_buffer too small");
        uint8_t* at = base_ + data_len_ - n;
        if (n) std::memcpy(at, src, n);
        return at;
    }

private:
    uint8_t* base_ = nullptr;
    size_t page_ = 0, data_len_ = 0;
};

}  // namespace sekisho::test
