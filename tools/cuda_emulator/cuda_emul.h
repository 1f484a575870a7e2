// Minimal CPU emulation of the CUDA features the fastsoft kernels use: one std::thread per
// CUDA thread, blocks run one after another, barriers for __syncthreads, a per-warp
// exchange for __shfl_xor_sync.  For checking kernel logic on a machine without a GPU.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct emu_dim { unsigned x = 1, y = 1, z = 1; };
inline thread_local emu_dim threadIdx;
inline thread_local emu_dim blockIdx;
inline emu_dim blockDim, gridDim;

struct emu_block {
    std::unique_ptr<std::barrier<>> block_barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
    std::vector<unsigned long long> exchange;   // one slot per thread
    std::atomic<int> or_flag{0};
};
inline emu_block* emu_current = nullptr;

inline void __syncthreads() { emu_current->block_barrier->arrive_and_wait(); }

inline int __syncthreads_or(int predicate)
{
    if (predicate) emu_current->or_flag.store(1);
    __syncthreads();
    int result = emu_current->or_flag.load();
    __syncthreads();
    if (threadIdx.x == 0) emu_current->or_flag.store(0);
    __syncthreads();
    return result;
}

template <typename T>
inline T __shfl_xor_sync(unsigned, T value, int lane_mask)
{
    const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    auto& slots = emu_current->exchange;
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof value);
    slots[threadIdx.x] = bits;
    emu_current->warp_barriers[warp]->arrive_and_wait();
    T other;
    bits = slots[warp * 32 + (lane ^ lane_mask)];
    std::memcpy(&other, &bits, sizeof other);
    emu_current->warp_barriers[warp]->arrive_and_wait();
    return other;
}

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline int __float2int_rn(float x) { return std::isnan(x) ? 0 : (int)std::nearbyint(x); }

inline void emu_launch(unsigned grid, unsigned block, const std::function<void()>& body)
{
    emu_block state;
    state.block_barrier = std::make_unique<std::barrier<>>(block);
    for (unsigned w = 0; w < block / 32; ++w)
        state.warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
    state.exchange.assign(block, 0);
    emu_current = &state;
    blockDim.x = block;
    gridDim.x = grid;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; ++t) {
        threads.emplace_back([&, t] {
            threadIdx.x = t;
            for (unsigned b = 0; b < grid; ++b) {
                blockIdx.x = b;
                body();
                __syncthreads();
            }
        });
    }
    for (auto& thread : threads) thread.join();
    emu_current = nullptr;
}
