/*
The LSTM cell's per-element math, forward and backward, as __host__ __device__ inline templates
(float and double): the one CUDA C copy of minis2s/ops/lstm.py's pointwise part. Included by
kernels/lstm_pointwise.cu (the per-step fused kernels) and kernels/lstm_persistent.cu, compiled
for the GPU by NVRTC/nvcc and for the CPU by the host compiler (the tests call it through ctypes).
*/
#pragma once

#define HD __host__ __device__ inline

HD float tanh_(float x) { return tanhf(x); }
HD double tanh_(double x) { return tanh(x); }

// σ(x) = ½(1 + tanh(x/2)): never overflows (e^-x does for large -x); as minis2s/ops/activations.py
template <typename T>
HD T sigmoid_(T x) { return T(0.5) * (tanh_(T(0.5) * x) + T(1)); }

template <typename T>
HD void lstm_unit_forward(T a_i, T a_f, T a_g, T a_o, T c_prev,
                          T& i, T& f, T& g, T& o, T& c, T& tanh_c, T& h) {
    i = sigmoid_(a_i);
    f = sigmoid_(a_f);
    g = tanh_(a_g);
    o = sigmoid_(a_o);
    c = f * c_prev + i * g;
    tanh_c = tanh_(c);
    h = o * tanh_c;
}

template <typename T>
HD void lstm_unit_backward(T dh, T dc_next, T i, T f, T g, T o, T c_prev, T tanh_c,
                           T& da_i, T& da_f, T& da_g, T& da_o, T& dc_prev) {
    T dc = dc_next + dh * o * (T(1) - tanh_c * tanh_c);  // c reaches h through tanh
    da_i = dc * g * i * (T(1) - i);
    da_f = dc * c_prev * f * (T(1) - f);
    da_g = dc * i * (T(1) - g * g);
    da_o = dh * tanh_c * o * (T(1) - o);
    dc_prev = dc * f;
}
